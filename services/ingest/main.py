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

# Python's young collection runs every 700 net container allocations: a 100-event batch
# holds ~1,000 while in flight, so every request set one off, promoting the requests in
# flight to older generations, and a full pass followed every ~110 requests. Under wrk's
# 100-event batches, 10 s (gc callbacks, thread CPU): ~2,400 young, ~220 middle and ~22 full
# passes, 0.32 s of the loop's CPU (~60 µs per request), each full pass ~3 ms of CPU and
# 20-37 ms of wall time on the busy machine: a pause every request in flight waits out. A
# request's objects are freed by reference counting (its in-flight peak stays far below
# 50,000), so at these thresholds no pass ran in the 10 s, and the cyclic garbage a pass
# would free stays bounded by the threshold, as in the stream worker (GC_THRESHOLDS there).
GC_THRESHOLDS = (50_000, 10, 10)


def app_factory() -> FastAPI:
    logs.configure()
    app = build_ingest(get_settings())
    # Everything imported and built so far lives as long as the process: moved out of the
    # collector's reach, a full collection no longer walks it (~25 ms here, a pause every
    # request in flight waited out: the open-loop p99, issue 16).
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
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
