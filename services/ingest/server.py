"""How uvicorn serves the collector: a header-read deadline and a limit on requests in flight.

uvicorn arms no timer on a connection until its first response (a request-start timeout is
still an open item of uvicorn, encode/uvicorn#157), so a client that sends a request line and
one header (or nothing) holds its socket forever; and its
``limit_concurrency`` counts such idle connections, so 2,048 of them made ``/healthz`` and
every good request a 503. Here a connection must complete its headers within
``EVENTPIPE_HEADER_READ_TIMEOUT_S`` of connecting (or of its previous response), else it is
closed; and the 503 limit counts requests the app is working on, not idle sockets.
A proxy in front remains the first line (docs/runbook.md, "A proxy in front").
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import MutableMapping
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from eventpipe.ingest.body import BODY_BUFFERED
from eventpipe.settings import Settings

DEFAULT_HEADER_READ_TIMEOUT_S = 10.0
GRACEFUL_SHUTDOWN_S = 30  # SIGTERM: requests in flight finish, then the producer flushes (compose waits)
_CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"  # uvicorn writes it before the response: not held
_TIMEOUT_408 = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class HeadWithBody:
    """A connection's transport as one request's response sees it: the response head (status
    line and headers) is held back and written together with the first body write, so a small
    response costs one ``send`` system call instead of two (uvicorn writes each part as it
    comes, and uvloop writes at once; the head's write alone was ~15% of the collector's main
    thread under single events, issue 16). Every body message of a non-HEAD request writes
    (an empty body too), so the head never waits for long; a response cut short after its
    head gets the head on ``close``, as before."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.head: bytes | None = None
        self.held = False  # once per response: later writes go straight through

    def write(self, data: bytes) -> None:
        if not self.held and data.startswith(b"HTTP/") and data != _CONTINUE_100:
            self.held, self.head = True, data
            return
        if self.head is not None:
            data, self.head = self.head + data, None
        self.transport.write(data)

    def close(self) -> None:
        if self.head is not None:
            head, self.head = self.head, None
            self.transport.write(head)
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """httptools' protocol, plus: headers not complete in time -> 408 and the socket closes;
    each response written in one go (``HeadWithBody``)."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.header_timeout_s = getattr(config, "header_read_timeout_s", DEFAULT_HEADER_READ_TIMEOUT_S)
        self._header_deadline: asyncio.TimerHandle | None = None
        self._reading_headers = False  # a request began and its headers are not complete yet

    def _arm(self) -> None:
        if self._header_deadline is None:
            self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            self.transport.write(_TIMEOUT_408)
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a socket that never sends a byte is cut too

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # The next request on a kept-alive connection began in these bytes without completing
        # its headers: its deadline runs from now. Armed here, after parsing, not when the
        # request begins: most requests arrive whole, and a timer per request set and cancelled
        # within one call cost ~1.5% of the main thread (issue 16).
        if self._reading_headers:
            self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_headers = True

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._disarm()  # from here the app's own body-read deadline applies
        super().on_headers_complete()
        cycle = self.cycle  # the request's cycle, created just now; its app has not run yet
        # not for HEAD: uvicorn writes no body for it, the head is all there is
        if cycle is not None and cycle.transport is self.transport and self.scope["method"] != "HEAD":
            cycle.transport = HeadWithBody(self.transport)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # the body is whole in the cycle: the app reads it without a deadline (body.py)
        self.scope[BODY_BUFFERED] = True  # type: ignore[literal-required]

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


class InFlightLimit:
    """Pure ASGI: beyond ``limit`` HTTP requests being handled at once, answer 503 at once."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            await self.overloaded(send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    @staticmethod
    async def overloaded(send: Any) -> None:
        body = json.dumps(
            {"success": False, "error": "overloaded", "detail": "too many requests in flight, retry"}
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"retry-after", b"1")]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})


# Served only on EVENTPIPE_INGEST_OPS_PORT in production: they tell traffic, sources and event
# names to whoever asks, and the public port answers every origin (CORS *).
OPS_PATHS = ("/metrics", "/docs", "/redoc", "/openapi.json")


class OpsPortOnly:
    """Pure ASGI: with ``ops_port`` set, the ops paths answer 404 on any other port."""

    def __init__(self, app: Any, ops_port: int | None) -> None:
        self.app = app
        self.ops_port = ops_port

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.ops_port is not None and scope["path"].startswith(OPS_PATHS):
            server = scope.get("server") or (None, None)
            if server[1] != self.ops_port:
                body = b'{"success":false,"error":"not_found","detail":"Not Found"}'
                await send({"type": "http.response.start", "status": 404,
                            "headers": [(b"content-type", b"application/json")]})  # fmt: skip
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def ops_port(settings: Settings) -> int | None:
    """The separate ops port, used with EVENTPIPE_ENV=production only."""
    return settings.ingest_ops_port if settings.env == "production" else None


def listening_sockets(settings: Settings) -> list[socket.socket]:
    """The public port, and in production the ops port beside it (same host)."""
    ports = [settings.ingest_port] + ([ops] if (ops := ops_port(settings)) is not None else [])
    sockets = []
    for port in ports:
        sock = socket.socket(socket.AF_INET6 if ":" in settings.ingest_host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((settings.ingest_host, port))
        sock.set_inheritable(True)  # --workers: the worker processes accept on it
        sockets.append(sock)
    return sockets


def server_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The one uvicorn configuration of the collector (``eventpipe ingest`` and the tests)."""
    options: dict[str, Any] = {
        "host": settings.ingest_host,
        "port": settings.ingest_port,
        "access_log": False,
        "log_config": None,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
        "timeout_keep_alive": 5,
        "server_header": False,
        "http": HeaderDeadlineProtocol,
        # no limit_concurrency: uvicorn's counts idle sockets; the app's InFlightLimit does not
        **overrides,
    }
    config = uvicorn.Config(app, **options)
    # read by HeaderDeadlineProtocol; an attribute survives the pickling of --workers
    config.header_read_timeout_s = settings.header_read_timeout_s  # type: ignore[attr-defined]
    return config
