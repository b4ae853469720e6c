"""The nightly scheduler against the real warehouse: due days run oldest first, once."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime

import pytest
from prometheus_client import CollectorRegistry

from eventpipe.bootstrap import build_reprocess, build_warehouse
from eventpipe.loader.reprocess.pipeline import run_day
from eventpipe.loader.reprocess.schedule import NightlyScheduler
from eventpipe.loader.warehouse import migrate

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)  # day 26 (L=1) became due at 02:00


def test_due_days_run_once_in_order_in_the_background(s3, settings, pg_schema):
    settings = settings.model_copy(update={"reprocess_lookback_days": 3})
    migrate(build_warehouse(settings))
    registry = CollectorRegistry()
    gate = threading.Event()  # holds the round open, so the second tick meets it running

    def run_after_gate(*args, **kwargs):
        assert gate.wait(timeout=60), "the test never opened the gate"
        return run_day(*args, **kwargs)

    # check_every_s=0: only a running round can make tick() refuse
    scheduler = NightlyScheduler(
        settings,
        registry=registry,
        clock=lambda: NOW,
        run=run_after_gate,
        check_every_s=0,
        adapters=build_reprocess(settings),
    )
    assert scheduler.due_days() == [date(2026, 11, 24), date(2026, 11, 25), date(2026, 11, 26)]
    assert scheduler.tick() is True
    assert scheduler.tick() is False  # one round at a time: the first is still running
    gate.set()
    scheduler.join(timeout=120)
    assert scheduler.due_days() == []
    assert scheduler.tick() is True  # that round over, the next may start (it finds nothing due)
    scheduler.join(timeout=120)
    assert registry.get_sample_value("eventpipe_reprocess_duration_seconds_count") == 3
    fresh = CollectorRegistry()  # a restarted loader starts its success gauge from the warehouse
    NightlyScheduler(
        settings, registry=fresh, clock=lambda: NOW, adapters=build_reprocess(settings)
    ).due_days()
    assert fresh.get_sample_value("eventpipe_reprocess_last_success_timestamp_seconds") > 0
