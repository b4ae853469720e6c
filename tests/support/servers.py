"""Run the real collector (uvicorn + FastAPI + Kafka producer) inside a test, on a free port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import uvicorn

from eventpipe.ingest.app import create_app
from eventpipe.ingest.server import listening_sockets, server_config
from eventpipe.settings import Settings


@contextmanager
def http_server(handler: Callable[..., BaseHTTPRequestHandler]) -> Iterator[str]:
    """A threading HTTP server on 127.0.0.1 (a free port) for as long as the block runs: its
    base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_ingest(settings: Settings) -> Iterator[str]:
    """Yields the base URL of a collector serving ``settings``; stops it (SIGTERM-like) after."""
    port = free_port()
    settings = settings.model_copy(update={"ingest_host": "127.0.0.1", "ingest_port": port})
    # the production server configuration (header deadline, in-flight limit, ops port), on free ports
    config = server_config(create_app(settings), settings, host="127.0.0.1", port=port, lifespan="on")
    server = uvicorn.Server(config)
    sockets = listening_sockets(settings)
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("collector did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
