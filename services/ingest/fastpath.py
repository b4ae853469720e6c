"""The tracking POSTs' own path through the app: straight to the handler, past the framework.

A POST to a tracking path used to cross a dozen ASGI layers before ``Collector.handle`` ran:
FastAPI's OpenTelemetry check (three environment lookups per request), its error-telemetry
and body-limit wrappers, Starlette's error and exception middleware, ours (in-flight limit,
ops port, CORS, status metrics), the exit-stack middleware and the router's linear match.
Under wrk's single-event load they were about a third of the collector's main thread
(py-spy, issue 16). ``CollectorApp`` serves those POSTs itself, doing what the layers did for
them, in the same order:

* the in-flight limit (the same counter as every other request: the ``InFlightLimit`` in front
  of FastAPI, whose count and 503 the tracking path uses inline);
* the handler's ``InvalidInput`` -> its JSON error (the function the app's exception handler
  calls), anything else -> the plain 500 Starlette's ``ServerErrorMiddleware`` sends, re-raised
  so uvicorn logs it;
* the CORS headers ``CORSMiddleware`` adds to a simple response (taken from a
  ``CORSMiddleware`` built with the app's options, so the two cannot drift);
* the per-route, per-status request counter.

Not on it: FastAPI's OpenTelemetry instrumentation (the collector exports Prometheus) and the
ops-port check (no tracking path is an ops path). Every other request (OPTIONS preflights,
other methods, other paths, a path with a trailing slash) takes the full stack as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from eventpipe.errors import InvalidInput
from eventpipe.ingest.metrics import IngestMetrics
from eventpipe.ingest.routes import Handler, Route
from eventpipe.ingest.server import InFlightLimit
from eventpipe.ingest.wire import header


def cors_headers(options: dict[str, Any]) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    """The headers CORSMiddleware adds to a simple (non-preflight) response: without an
    ``Origin`` only ``Vary: Origin``; with one, its simple headers too (no credentials: no
    echoed origin)."""
    cors = CORSMiddleware(app=None, **options)  # type: ignore[arg-type]  # never called
    if cors.allow_credentials or not cors.allow_all_origins:  # then it echoes the origin
        raise ValueError("the tracking fast path serves CORS for any origin without credentials")
    vary = [(b"vary", b"Origin")]
    simple = [(name.lower().encode(), value.encode()) for name, value in cors.simple_headers.items()]
    return vary, simple + vary


class TrackingEndpoint:
    """One tracking POST, from scope to response, with the layers' duties listed above."""

    def __init__(
        self,
        handle: Handler,
        invalid: Callable[[InvalidInput], Response],
        metrics: IngestMetrics,
        cors_options: dict[str, Any],
    ) -> None:
        self.handle = handle
        self.invalid = invalid
        self.metrics = metrics
        self.without_origin, self.with_origin = cors_headers(cors_options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send, route: Route) -> None:
        status = 500
        try:
            try:
                response = await self.handle(scope, receive, route)
            except InvalidInput as exc:
                response = self.invalid(exc)
            except Exception:
                await PlainTextResponse("Internal Server Error", 500)(scope, receive, send)
                raise
            status = response.status_code
            origin = header(scope, b"origin") is not None
            response.raw_headers += self.with_origin if origin else self.without_origin
            await response(scope, receive, send)
        finally:
            self.metrics.count_request(scope["path"], status)


class CollectorApp(FastAPI):
    """The collector's FastAPI app, whose tracking POSTs go to a ``TrackingEndpoint``
    (``serve_tracking``) and everything else to FastAPI, both behind one in-flight limit."""

    def serve_tracking(self, paths: dict[str, Route], endpoint: TrackingEndpoint, max_in_flight: int) -> None:
        self._tracking_paths = paths
        self._tracking = endpoint
        self._limit = InFlightLimit(super().__call__, max_in_flight)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            route = self._tracking_paths.get(scope["path"])
            if route is not None:  # the limit's own accounting, inline: two coroutine frames fewer
                limit = self._limit
                if limit.in_flight >= limit.limit:
                    await limit.overloaded(send)
                    return
                limit.in_flight += 1
                try:
                    await self._tracking(scope, receive, send, route)
                finally:
                    limit.in_flight -= 1
                return
        await self._limit(scope, receive, send)
