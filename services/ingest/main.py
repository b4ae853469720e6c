"""Entrypoint: ``eventpipe ingest`` runs uvicorn with the app factory."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from eventpipe import logs
from eventpipe.bootstrap import build_ingest
from eventpipe.gctune import freeze_and_tune
from eventpipe.ingest.server import listening_sockets, server_config
from eventpipe.settings import get_settings


def app_factory() -> FastAPI:
    logs.configure()
    app = build_ingest(get_settings())
    # a full collection was ~25 ms here, a pause every request in flight waited out (the
    # open-loop p99, issue 16); young passes were one per request (eventpipe.gctune)
    freeze_and_tune()
    return app


def serve(workers: int = 1) -> int:
    settings = get_settings()
    logs.configure()
    config = server_config("eventpipe.ingest.main:app_factory", settings, factory=True, workers=workers)
    server = uvicorn.Server(config)
    sockets = listening_sockets(settings)  # in production: the ops port too
    if workers > 1:
        Multiprocess(config, sockets=sockets).run()
    else:
        server.run(sockets=sockets)
    return 0 if workers > 1 or server.started else 1
