"""The collector's HTTP app: ``create_app(settings)`` wires the real publisher in its lifespan.

A 2xx means every accepted event of the request is acknowledged by Kafka; anything the
broker did not confirm is a 503 with Retry-After. Bad input is a JSON error and nothing else.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope

from eventpipe import strictjson
from eventpipe.clock import Clock, SystemClock
from eventpipe.errors import InvalidInput, PayloadTooLarge, PublishError
from eventpipe.events import EVENT_TYPES
from eventpipe.ingest import openapi
from eventpipe.ingest.auth import source_for, write_key_from_header
from eventpipe.ingest.body import decode_body, read_body
from eventpipe.ingest.collect import RequestInfo, collect, dead_letter
from eventpipe.ingest.fastpath import CollectorApp, TrackingEndpoint
from eventpipe.ingest.metrics import EventNameLabels, IngestMetrics, StatusMetricsMiddleware
from eventpipe.ingest.publisher import Publisher, broker_reachable, create_publisher
from eventpipe.ingest.ratelimit import RateLimiter, retry_headers
from eventpipe.ingest.routes import Route, add_tracking_routes, tracking_paths
from eventpipe.ingest.server import OpsPortOnly, ops_port
from eventpipe.ingest.trackingplan import TrackingPlan
from eventpipe.ingest.wire import JSONBytes, header
from eventpipe.settings import Settings

log = logging.getLogger("eventpipe.ingest")
RETRY_AFTER_S = 5
# 1x1 transparent GIF for the pixel endpoint
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


CORS_OPTIONS: dict[str, Any] = {
    "allow_origins": ["*"],
    "allow_methods": ["GET", "POST", "OPTIONS"],
    "allow_headers": ["*"],
    # a cross-origin script (analytics-next) sees only these beyond the CORS-safelisted ones
    "expose_headers": ["Retry-After", "X-RateLimit-Reset"],
    "max_age": 86400,
}


def error(status: int, reason: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"success": False, "error": reason, "detail": detail}, status, headers)


class Collector:
    """Everything a request needs, created once per app in the lifespan."""

    def __init__(
        self, settings: Settings, publisher: Publisher, metrics: IngestMetrics, clock: Clock
    ) -> None:
        self.settings, self.clock = settings, clock
        self.publisher = publisher
        self.metrics = metrics
        self.keys = settings.write_key_map
        self.plan = TrackingPlan.load(settings.tracking_plan, settings.tracking_plan_modes)
        self.limiter = RateLimiter(
            settings.effective_rate_limit_per_s,
            settings.rate_limit_burst,
            settings.effective_rate_limit_bytes_per_s,
            settings.rate_limit_bytes_burst,
        )
        self.last_publish_failure = 0.0
        self.last_publish_success = 0.0

    def publishing_fails(self) -> bool:
        """The last publish within a few timeouts failed and none succeeded since."""
        recent = self.clock.monotonic() - self.last_publish_failure < 3 * self.settings.publish_timeout_s
        return recent and self.last_publish_failure > self.last_publish_success

    def authenticate(self, authorization: str | None, body_key: str | None = None) -> str:
        source = source_for(write_key_from_header(authorization) or body_key, self.keys)
        if source is None:
            raise InvalidInput("unauthorized", "missing or unknown write key (HTTP Basic, key as user name)")
        return source

    @staticmethod
    def rate_limited(unit: str, wait: float) -> JSONResponse:
        detail = f"over this write key's {unit} rate (per collector process)"
        return error(429, "rate_limited", detail, retry_headers(wait))

    async def handle(
        self,
        scope: Scope,
        receive: Receive,
        event_type: str | None,
        raw: bytes | None = None,
        importing: bool = False,
    ) -> Response:
        """One tracking request, from its ASGI scope and body (``raw``: given, not read).
        ``importing``: /v1/import (timestamps kept as sent, bigger batches; see routes.py)."""
        settings = self.settings
        authorization = header(scope, b"authorization")
        source = self.authenticate(authorization) if authorization else None
        # Without a header the key is inside the body (browsers' text/plain, analytics-kotlin's
        # gzipped batches): the body is read and inflated under the same hard caps as any
        # other, then parsed and authenticated before any other work (docs/security.md).
        if raw is None:
            raw = await read_body(scope, receive, settings.max_request_bytes, settings.body_read_timeout_s)
        body_bytes = decode_body(raw, header(scope, b"content-encoding"), settings.max_request_bytes)
        self.metrics.observe_request_bytes(len(body_bytes))
        body = strictjson.loads(body_bytes, settings.max_json_depth)
        if source is None:  # browsers and mobile SDKs put the key in the body
            body_key = body.get("writeKey") if isinstance(body, dict) else None
            source = self.authenticate(None, body_key if isinstance(body_key, str) else None)
        wait = self.limiter.bytes_retry_after(source, len(body_bytes), self.clock.monotonic())
        if wait > 0:
            return self.rate_limited("bytes", wait)

        client = scope.get("client")  # (host, port): what request.client wraps, unwrapped
        info = RequestInfo(
            received_at=self.clock.now(),
            source=source,
            client_ip=client[0] if client else None,
            max_event_bytes=settings.max_event_bytes,
            max_batch_events=settings.max_import_batch_events if importing else settings.max_batch_events,
            correct_skew=not importing,
            plan=self.plan,
            max_request_bytes=settings.max_request_bytes,
            max_batch_context_bytes=settings.max_batch_context_bytes,
        )
        collected = collect(body, event_type, info)

        # rejected events are charged too: each costs a dead-letter record
        charged = len(collected.records) + len(collected.rejected)
        wait = self.limiter.retry_after(source, charged, self.clock.monotonic())
        if wait > 0:
            self.metrics.events_rejected.labels("rate_limited").inc(charged)
            return self.rate_limited("event", wait)

        topic = settings.events_topic
        records = [(topic, key, value) for key, value in collected.records]
        records += [(settings.deadletter_topic, None, dead_letter(r, info)) for r in collected.rejected]
        started = time.perf_counter()
        try:
            await self.publisher.publish(records)
        except PublishError:
            self.metrics.publish_failures.inc()
            self.last_publish_failure = self.clock.monotonic()
            log.warning("publish failed", extra={"events": len(records)})
            return error(
                503,
                "unavailable",
                "events not stored: Kafka did not acknowledge, retry",
                {"Retry-After": str(RETRY_AFTER_S)},
            )
        self.last_publish_success = self.clock.monotonic()
        self.metrics.observe_publish_seconds(time.perf_counter() - started)
        self.metrics.accepted(source, collected.types, collected.names, collected.sizes)
        for rejection in collected.rejected:
            self.metrics.events_rejected.labels(rejection.reason).inc()
            self.metrics.deadletters.labels(rejection.reason).inc()
        # receivedAt: the server time stamped on every accepted event of this request, so a
        # client (and the fault suite's oracle) can recompute each corrected timestamp itself
        if collected.rejected:
            answer = {"success": True, "accepted": len(collected.records), "receivedAt": info.received_text}
            answer["rejected"] = [r.public() for r in collected.rejected]
            return JSONResponse(answer)
        # the usual answer, written directly: the bytes JSONResponse would render, without
        # its encoder (receivedAt is format_ts's output: nothing in it needs escaping)
        body = b'{"success":true,"accepted":%d,"receivedAt":"%s"}' % (
            len(collected.records),
            info.received_text.encode(),
        )
        return JSONBytes(body)


def create_app(
    settings: Settings,
    publisher_factory: Callable[[Settings], Publisher] = create_publisher,
    clock: Clock | None = None,
) -> FastAPI:
    settings.require_secrets("ingest")
    names = EventNameLabels(
        settings.metrics_event_names, settings.metrics_top_events, settings.metrics_event_min_count
    )
    metrics = IngestMetrics(names)
    state: dict[str, Collector] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        publisher = await asyncio.to_thread(publisher_factory, settings)
        state["collector"] = Collector(settings, publisher, metrics, clock or SystemClock())
        log.info("ingest ready", extra={"kafka": settings.kafka_bootstrap, "client": settings.kafka_client})
        try:
            yield
        finally:
            log.info("draining producer")
            await asyncio.to_thread(publisher.close)

    app = CollectorApp(
        title="eventpipe collector",
        version="0.1.0",
        description="Segment-compatible HTTP Tracking API. Auth: HTTP Basic, write key as user name.",
        lifespan=lifespan,
    )
    app.add_middleware(StatusMetricsMiddleware, metrics_of=lambda: metrics)
    app.add_middleware(CORSMiddleware, **CORS_OPTIONS)
    app.add_middleware(OpsPortOnly, ops_port=ops_port(settings))

    def invalid(exc: InvalidInput) -> JSONResponse:
        if exc.reason == "unauthorized":
            return error(401, exc.reason, exc.detail, {"WWW-Authenticate": 'Basic realm="eventpipe"'})
        if exc.reason == "body_timeout":
            return error(408, exc.reason, exc.detail, {"Connection": "close"})
        status = 413 if isinstance(exc, PayloadTooLarge) else 400
        metrics.events_rejected.labels(exc.reason).inc()
        return error(status, exc.reason, exc.detail)

    @app.exception_handler(InvalidInput)
    async def invalid_input(_: Request, exc: InvalidInput) -> JSONResponse:
        return invalid(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, "http_error", str(exc.detail), getattr(exc, "headers", None))

    async def track(scope: Scope, receive: Receive, route: Route) -> Response:
        return await state["collector"].handle(scope, receive, route.event_type, importing=route.importing)

    add_tracking_routes(app, track)  # served by the fast path; the router keeps them for the docs
    endpoint = TrackingEndpoint(track, invalid, metrics, CORS_OPTIONS)
    app.serve_tracking(tracking_paths(), endpoint, settings.ingest_max_concurrency)

    @app.get(
        "/v1/pixel/{kind}",
        summary="Record a call from an image request",
        tags=["tracking"],
        responses={200: {"content": {"image/gif": {}}}, **openapi.RESPONSES},
    )
    async def pixel(request: Request, kind: str, data: str) -> Response:
        if kind not in EVENT_TYPES:
            raise InvalidInput("invalid_type", f"type must be one of {', '.join(EVENT_TYPES)}")
        try:
            raw = base64.b64decode(
                data + "=" * (-len(data) % 4),
                altchars=b"-_" if "-" in data or "_" in data else None,
                validate=True,
            )
        except (binascii.Error, ValueError) as exc:
            raise InvalidInput("invalid_body", "data must be base64-encoded JSON") from exc
        if len(raw) > settings.max_event_bytes:
            raise PayloadTooLarge("too_large", f"pixel data over {settings.max_event_bytes} bytes")
        response = await state["collector"].handle(request.scope, request.receive, kind, raw=raw)
        if response.status_code != 200:
            return response
        return Response(PIXEL, media_type="image/gif", headers={"Cache-Control": "no-store"})

    @app.get("/healthz", tags=["ops"], summary="process alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz", tags=["ops"], summary="Kafka reachable", responses={503: {"description": "not ready"}}
    )
    async def readyz() -> Response:
        reachable = await asyncio.to_thread(broker_reachable, settings.kafka_bootstrap)
        metrics.kafka_up.set(1 if reachable else 0)
        collector = state.get("collector")
        if not reachable or collector is None:
            return error(503, "not_ready", "Kafka is not reachable", {"Retry-After": str(RETRY_AFTER_S)})
        if collector.publishing_fails():
            return error(
                503, "not_ready", "Kafka does not acknowledge publishes", {"Retry-After": str(RETRY_AFTER_S)}
            )
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
