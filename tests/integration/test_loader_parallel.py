"""Loaders side by side, without a table lock: the ledger's insert-if-absent decides who
loads an object (docs/loader.md, "Concurrency")."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest

from eventpipe.bootstrap import build_loader
from eventpipe.keys import raw_key
from eventpipe.loader.runner import Limits
from eventpipe.s3 import gzip_json_rows
from tests.support.loader import NOW, query, synthetic_events, write_agg, write_raw
from tests.support.pipeline import child_env
from tests.support.servers import free_port

pytestmark = pytest.mark.integration

ONE_PER_GROUP = Limits(group_objects=1, scan_interval_s=0, deep_scan_interval_s=0)


def test_a_load_in_flight_does_not_hold_up_another_loader(settings, s3, pg_schema):
    """Loader A stops just before its COMMIT; loader B loads the other objects of the same
    table meanwhile (a table lock would make B wait for A), and leaves A's object alone."""
    events = synthetic_events(users=20)
    keys = write_raw(s3, settings, events, per_object=50)
    assert len(keys) >= 3
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        holding.set()
        assert release.wait(60), "the test never released loader A"

    first = build_loader(settings, s3=s3, limits=ONE_PER_GROUP, before_commit=hold_once(hold))
    second = build_loader(settings, s3=s3, limits=ONE_PER_GROUP)
    first.start()
    second.start()
    loaded_by_first: list[int] = []
    thread = threading.Thread(target=lambda: loaded_by_first.append(first.run_once()))
    try:
        thread.start()
        assert holding.wait(30), "loader A never reached its commit"
        loaded_by_second = second.run_once()  # returns while A's transaction is still open
        assert thread.is_alive()
        assert loaded_by_second == len(keys) - 1
        in_flight = set(keys) - {k for (k,) in query(settings, "SELECT key FROM load_ledger")}
        assert len(in_flight) == 1  # A's object: not loaded twice, not taken from A
        assert in_flight == set(second.pending)  # still pending for B: the ledger settles it
        release.set()
        thread.join(60)
        assert loaded_by_first == [1]  # its held object; the others were B's by then
        second.run_once()
        assert not second.pending
        ledger = query(settings, "SELECT key, COUNT(*) FROM load_ledger GROUP BY key")
        assert sorted(k for k, _ in ledger) == sorted(keys) and {n for _, n in ledger} == {1}
        ids = {e["messageId"] for e in events}
        assert query(settings, "SELECT COUNT(*), COUNT(DISTINCT message_id) FROM events") == [
            (len(ids), len(ids))
        ]
    finally:
        release.set()
        thread.join(60)
        first.close()
        second.close()


def hold_once(hold):
    """``hold`` at the first commit only."""
    calls = [0]

    def seam() -> None:
        calls[0] += 1
        if calls[0] == 1:
            hold()

    return seam


def test_three_loader_processes_load_each_object_exactly_once(settings, topics, s3, pg_schema, tmp_path):
    """Three ``eventpipe loader`` processes on the same day's objects. The oracle is what was
    written: each object's line count, and the distinct messageIds sent."""
    lines_of: dict[str, int] = {}
    ids: set[str] = set()
    for part in range(24):  # distinct events per object, so every line is one events row
        events = [
            dict(e, messageId=f"{part}-{uuid.uuid4()}") for e in synthetic_events(seed=part, users=5)[:80]
        ]
        key = settings.s3_prefix + raw_key(NOW, part % 3, part * 1000)
        s3.put_object(Bucket=settings.s3_bucket, Key=key, Body=gzip_json_rows(events))
        lines_of[key] = len(events)
        ids.update(e["messageId"] for e in events)
    row = {"day": "2026-11-20", "event": "*", "received_day": "2026-11-20", "event_count": 1, "user_count": 1}
    for n in range(24):
        lines_of[write_agg(s3, settings, "engagement_daily", [row], n)] = 1
    children, logs = [], []
    try:
        for n in range(3):
            log = open(tmp_path / f"loader{n}.log", "wb")  # noqa: SIM115 - closed below
            logs.append(log)
            env = child_env(settings, loader_port=free_port())
            children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "eventpipe.cli", "loader"], env=env, stderr=log, stdout=log
                )
            )
        deadline, loaded = time.monotonic() + 120, 0
        while time.monotonic() < deadline and loaded < len(lines_of):
            time.sleep(1)
            try:
                loaded = query(settings, "SELECT COUNT(*) FROM load_ledger")[0][0]
            except Exception:  # the first child may still be migrating
                loaded = 0
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            assert child.wait(30) == 0
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait(5)
        for log in logs:
            log.close()
    ledger = query(settings, "SELECT key, COUNT(*), SUM(rows) FROM load_ledger GROUP BY key")
    assert {k: (n, int(rows)) for k, n, rows in ledger} == {k: (1, lines) for k, lines in lines_of.items()}
    assert query(settings, "SELECT COUNT(*), COUNT(DISTINCT message_id) FROM events") == [
        (len(ids), len(ids))
    ]
    assert query(settings, "SELECT event_count FROM engagement_daily") == [(24,)]
    assert query(settings, "SELECT COUNT(*) FROM engagement_daily_deltas") == [(24,)]
