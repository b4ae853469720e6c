"""Faults: kill -9 between COPY and commit, a terminated warehouse backend, a warehouse
that is unreachable for a while. Each time: every row once, nothing skipped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psycopg2
import pytest

from eventpipe.bootstrap import build_loader, build_warehouse
from eventpipe.loader.metrics import LoaderMetrics
from eventpipe.loader.runner import Limits, retry_counter
from tests.support.loader import (
    expected_events,
    loaded_events,
    query,
    synthetic_events,
    write_raw,
)

pytestmark = pytest.mark.integration
LIMITS = Limits(group_objects=50, scan_interval_s=0, deep_scan_interval_s=0)

CHILD = """
import sys, time
from eventpipe.settings import Settings
from eventpipe.bootstrap import build_loader
from eventpipe.loader.runner import Limits

def hang():  # COPY and merge are done, the ledger row is written: stop before COMMIT
    print("READY", flush=True)
    time.sleep(120)

settings = Settings.model_validate_json(sys.argv[1])
loader = build_loader(settings, before_commit=hang, limits=Limits(group_objects=50, scan_interval_s=0))
loader.start()
loader.run_once()
"""


def test_kill_9_between_copy_and_commit_then_restart(settings, s3, pg_schema):
    events = synthetic_events(users=20)
    keys = write_raw(s3, settings, events, per_object=100)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, settings.model_dump_json(context={"reveal_secrets": True})],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "READY"  # inside the transaction, pre-commit
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    assert query(settings, "SELECT COUNT(*) FROM load_ledger") == [(0,)]
    assert query(settings, "SELECT COUNT(*) FROM events") == [(0,)]
    loader = build_loader(settings, s3=s3, limits=LIMITS)  # the restart
    try:
        loader.start()
        assert loader.run_once() == len(keys)  # waits for the dead session's lock to go
        assert loaded_events(settings) == expected_events(events)
        assert query(settings, "SELECT COUNT(*) FROM load_ledger") == [(len(keys),)]
    finally:
        loader.close()


def _terminate(settings, application_name: str) -> int:
    conn = psycopg2.connect(settings.warehouse_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        )
        count = cur.fetchone()[0]
    conn.close()
    return count


def test_backend_terminated_mid_load_recovers(settings, s3, pg_schema, unique):
    events = synthetic_events(users=20)
    keys = write_raw(s3, settings, events, per_object=100)
    name = f"loader-test-{unique}"
    terminated = []

    def kill_own_backend() -> None:
        if not terminated:  # only the first attempt: the retry must succeed
            terminated.append(_terminate(settings, name))

    metrics = LoaderMetrics()
    loader = build_loader(
        settings,
        s3=s3,
        limits=LIMITS,
        metrics=metrics,
        warehouse=build_warehouse(
            settings, application_name=name, max_wait_s=1, on_retry=retry_counter(metrics)
        ),
        before_commit=kill_own_backend,
    )
    try:
        loader.start()
        assert loader.run_once() == len(keys)
        assert terminated == [1]
        assert loaded_events(settings) == expected_events(events)
        errors = loader.metrics.registry.get_sample_value(
            "eventpipe_loader_warehouse_errors_total", {"error": "OperationalError"}
        ) or loader.metrics.registry.get_sample_value(
            "eventpipe_loader_warehouse_errors_total", {"error": "InterfaceError"}
        )
        assert errors and errors >= 1
        assert loader.metrics.registry.get_sample_value("eventpipe_loader_warehouse_up") == 1
    finally:
        loader.close()


def test_unreachable_warehouse_skips_nothing(settings, s3, pg_schema):
    events = synthetic_events(users=10)
    keys = write_raw(s3, settings, events, per_object=100)
    good = build_warehouse(settings, max_wait_s=0.2)
    loader = build_loader(settings, s3=s3, limits=LIMITS, warehouse=good)
    try:
        loader.start()
        down = settings.model_copy(update={"warehouse_dsn": "postgresql://eventpipe:eventpipe@127.0.0.1:1/x"})
        loader.wh = build_warehouse(down, attempts=3, max_wait_s=0.2, on_retry=retry_counter(loader.metrics))
        loader.pending.clear()
        from eventpipe.errors import WarehouseError

        started = time.monotonic()
        with pytest.raises(WarehouseError):
            loader.run_once()
        assert time.monotonic() - started < 10  # bounded retries
        assert loader.metrics.registry.get_sample_value("eventpipe_loader_warehouse_up") == 0
        assert query(settings, "SELECT COUNT(*) FROM load_ledger") == [(0,)]
        loader.wh = good  # the warehouse is back
        assert loader.run_once() == len(keys)
        assert loaded_events(settings) == expected_events(events)
    finally:
        loader.close()
