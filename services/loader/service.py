"""``eventpipe loader``: the long-running loader (pid ``.local/run/loader.pid`` under
``make up``), with ``/metrics`` on ``EVENTPIPE_LOADER_PORT`` and a graceful SIGTERM: the
round in flight finishes (its transaction commits or rolls back), then it exits."""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from prometheus_client import start_http_server

from eventpipe.bootstrap import build_loader, build_reprocess, warehouse_factory
from eventpipe.checks.run import after_nightly
from eventpipe.errors import WarehouseError
from eventpipe.loader.discovery import Notices
from eventpipe.loader.metrics import LoaderMetrics
from eventpipe.loader.reprocess.schedule import NightlyScheduler
from eventpipe.loader.runner import Loader
from eventpipe.loader.verify_loop import DayVerifier
from eventpipe.logs import configure
from eventpipe.settings import Settings, get_settings

log = logging.getLogger("eventpipe.loader")
KAFKA_RETRY_S = 60.0


def _notices(settings: Settings) -> Notices | None:
    """The notices consumer, or None while Kafka is away (S3 listing still loads everything)."""
    try:
        return Notices(settings)
    except Exception:  # kafka-python raises several unrelated types when no broker answers
        log.warning("batches topic unavailable; discovering by S3 listing only", exc_info=True)
        return None


def _start(loader: Loader, stop: threading.Event) -> bool:
    """Migrate the schema, waiting for the warehouse as long as it takes (or until stopped)."""
    while not stop.is_set():
        try:
            loader.start()
            return True
        except WarehouseError:
            log.exception("warehouse unavailable at start-up; waiting")
            stop.wait(5)
    return False


def run(settings: Settings, stop: threading.Event) -> None:
    metrics = LoaderMetrics()
    server, _ = start_http_server(settings.loader_port, addr=settings.loader_host, registry=metrics.registry)
    loader = build_loader(settings, metrics=metrics, notices=_notices(settings))
    sessions = warehouse_factory(settings, loader.wh.dialect)
    # issue 11: the numbers check themselves
    verifier = DayVerifier(settings, registry=metrics.registry, warehouse=sessions)
    # issue 5: closed days, off-loop; each day made final is verified right after
    data_checks = after_nightly(settings, sessions, metrics.registry)  # issue 18: the data tests of that day

    def after_day(result: Any) -> None:
        verifier.final_day(result)
        data_checks(result)

    adapters = build_reprocess(settings, s3=loader.s3, dialect=loader.wh.dialect)
    nightly = NightlyScheduler(settings, registry=metrics.registry, after_day=after_day, adapters=adapters)
    log.info(
        "loader started",
        extra={
            "port": settings.loader_port,
            "dialect": settings.warehouse_dialect,
            "schema": settings.warehouse_schema,
        },
    )
    try:
        if not _start(loader, stop):
            return
        last_kafka_try = time.monotonic()
        while not stop.is_set():
            nightly.tick()
            verifier.tick()
            loader.run_forever(stop, max_rounds=120)
            if loader.notices is None and time.monotonic() - last_kafka_try > KAFKA_RETRY_S:
                loader.notices, last_kafka_try = _notices(settings), time.monotonic()
    finally:
        loader.close()
        server.shutdown()
        log.info("loader stopped")


def main() -> int:
    configure()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    settings = get_settings()
    settings.require_secrets("loader")
    run(settings, stop)
    return 0
