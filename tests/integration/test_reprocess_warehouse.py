"""The nightly reprocess end to end on the real S3 API server and PostgreSQL: a history is
archived and streamed (the stream's own fold, loaded by the loader), then days are
reprocessed with the inline runner and the warehouse is compared with the reference truth.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from prometheus_client import CollectorRegistry

from eventpipe.bootstrap import build_dialect
from eventpipe.loader.reprocess.pipeline import ReprocessBusy, day_lock
from tests.support.archive import archive, stream_deltas
from tests.support.histories import DAY, histories
from tests.support.reprocess import (
    DAYS,
    IN_ORDER,
    OUT_OF_ORDER,
    assert_days_equal_the_truth,
    day_rows,
    dump,
    ev,
    load_stream,
    prepare,
    reprocess_days,
    run_nightly,
    truth_rows,
)
from tests.support.warehouse import fresh_example

pytestmark = pytest.mark.integration


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories(max_events=60, max_lag_minutes=1439))
def test_every_reprocessed_day_equals_the_truth_and_twice_is_once(s3, settings, pg_schema, history):
    example = fresh_example(settings, pg_schema)
    prepare(example, s3, history)
    once = reprocess_days(example, DAYS)
    assert_days_equal_the_truth(once, history, DAYS)
    again = run_nightly(example, DAY, lateness_days=1, runner="inline", registry=CollectorRegistry())
    assert dump(example) == once
    assert all(d["rows_changed"] == 0 for d in again.drift.values())


@pytest.mark.parametrize(("history", "drifts"), [(OUT_OF_ORDER, True), (IN_ORDER, False)])
def test_drift_is_measured_and_exported(s3, settings, pg_schema, history, drifts):
    prepare(settings, s3, history)
    registry = CollectorRegistry()
    result = run_nightly(settings, DAY, lateness_days=1, runner="inline", registry=registry)
    sample = registry.get_sample_value
    rows = sample("eventpipe_reprocess_drift_rows", {"table": "experiment_daily"})
    abs_count = sample("eventpipe_reprocess_drift_abs_count", {"table": "experiment_daily"})
    assert (rows, abs_count) == ((1.0, 1.0) if drifts else (0.0, 0.0))
    assert result.drift["engagement_daily"]["rows_changed"] == 0  # dedup and days were right
    assert sample("eventpipe_reprocess_last_success_timestamp_seconds") > 0
    assert sample("eventpipe_reprocess_duration_seconds_count") == 1
    assert day_rows(dump(settings), DAY) == truth_rows(history, DAY)


def test_a_late_event_after_final_keeps_the_day_exact(s3, settings, pg_schema):
    states = prepare(settings, s3, IN_ORDER)
    run_nightly(settings, DAY, lateness_days=1, runner="inline", registry=CollectorRegistry())
    late = [  # day D, received on D+3 > cutoff D+1: only the stream's delta can count it
        {**ev("m9", "u1", "18:00:00", "18:00:00"), "receivedAt": "2026-11-29T08:00:00.000Z"},
        {**ev("m8", "u3", "19:00:00", "19:00:00"), "receivedAt": "2026-11-29T08:00:01.000Z"},
    ]
    archive(s3, settings, late, first_offset=100)
    load_stream(settings, stream_deltas(late, states, first_offset=100))
    history = IN_ORDER + late
    assert day_rows(dump(settings), DAY) == truth_rows(history, DAY)
    result = run_nightly(settings, DAY, lateness_days=1, runner="inline", registry=CollectorRegistry())
    assert day_rows(dump(settings), DAY) == truth_rows(history, DAY)
    assert all(d["rows_changed"] == 0 for d in result.drift.values())


def test_a_crash_inside_the_replacement_changes_nothing_and_a_rerun_repairs(
    s3, settings, pg_schema, monkeypatch
):
    prepare(settings, s3, OUT_OF_ORDER)
    before = dump(settings)

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("killed between the row replacement and day_status")

    registry = CollectorRegistry()
    monkeypatch.setattr("eventpipe.loader.warehouse.mark_day_final", crash)
    with pytest.raises(RuntimeError):
        run_nightly(settings, DAY, lateness_days=1, runner="inline", registry=registry)
    assert dump(settings) == before
    assert registry.get_sample_value("eventpipe_reprocess_failures_total") == 1
    monkeypatch.undo()
    run_nightly(settings, DAY, lateness_days=1, runner="inline", registry=registry)
    once = dump(settings)
    assert day_rows(once, DAY) == truth_rows(OUT_OF_ORDER, DAY)
    run_nightly(settings, DAY, lateness_days=1, runner="inline", registry=registry)
    assert dump(settings) == once


def test_the_same_day_never_runs_twice_at_once(s3, settings, pg_schema):
    prepare(settings, s3, IN_ORDER)
    with day_lock(settings, DAY, build_dialect(settings)), pytest.raises(ReprocessBusy):
        run_nightly(settings, DAY, lateness_days=1, runner="inline", registry=CollectorRegistry())
    run_nightly(
        settings, DAY + timedelta(days=1), lateness_days=1, runner="inline", registry=CollectorRegistry()
    )
