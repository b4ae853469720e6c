"""Entrypoint: ``eventpipe ingest`` runs uvicorn with the app factory."""

from __future__ import annotations

import gc

import uvicorn
from fastapi import FastAPI
from uvicorn.supervisors import Multiprocess

from eventpipe import logs
from eventpipe.bootstrap import build_ingest
from eventpipe.ingest.server import listening_sockets, server_config
from eventpipe.settings import get_settings


def app_factory() -> FastAPI:
    logs.configure()
    app = build_ingest(get_settings())
    # Everything imported and built so far lives as long as the process: moved out of the
    # collector's reach, a full collection no longer walks it (~25 ms here, a pause every
    # request in flight waited out: the open-loop p99, issue 16). Requests' own garbage is
    # collected as before.
    gc.collect()
    gc.freeze()
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
