"""Entrypoint: ``eventpipe ingest`` runs uvicorn with the app factory."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from eventpipe import logs
from eventpipe.bootstrap import build_ingest
from eventpipe.ingest.server import listening_sockets, server_config
from eventpipe.settings import get_settings


def app_factory() -> FastAPI:
    logs.configure()
    return build_ingest(get_settings())


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
