"""Entrypoint: ``eventpipe ingest`` runs uvicorn with the app factory."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from eventpipe import logs
from eventpipe.ingest.app import create_app
from eventpipe.settings import get_settings


def app_factory() -> FastAPI:
    logs.configure()
    return create_app(get_settings())


def serve(workers: int = 1) -> int:
    settings = get_settings()
    logs.configure()
    uvicorn.run(
        "eventpipe.ingest.main:app_factory",
        factory=True,
        host=settings.ingest_host,
        port=settings.ingest_port,
        workers=workers,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=30,  # SIGTERM: drain in-flight requests, then flush Kafka
        limit_concurrency=settings.ingest_max_concurrency,  # beyond it: 503, not unbounded memory
        timeout_keep_alive=5,
        server_header=False,
    )
    return 0
