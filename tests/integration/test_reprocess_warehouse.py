"""The nightly reprocess end to end on the real S3 API server and PostgreSQL: a history is
archived and streamed (the stream's own fold, loaded by the loader), then days are
reprocessed with the inline runner and the warehouse is compared with the reference truth.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings
from prometheus_client import CollectorRegistry

from eventpipe.loader.batches import batch_from_rows
from eventpipe.loader.load import load_group
from eventpipe.loader.reprocess.pipeline import ReprocessBusy, day_lock, run_day
from eventpipe.loader.warehouse import Warehouse, migrate
from eventpipe.settings import Settings
from eventpipe.stream.fold import TABLES, PartitionState
from eventpipe.timeutil import format_ts
from tests import reference
from tests.integration.test_reprocess_job import archive, stream_deltas
from tests.support.warehouse import fresh_example
from tests.unit.test_reprocess_histories import DAY, histories

pytestmark = pytest.mark.integration


def load_stream(settings: Settings, deltas: dict[str, list]) -> None:
    wh = Warehouse(settings)
    try:
        for table in TABLES:
            batches = [
                batch_from_rows(settings.s3_prefix + k, table, rows) for k, rows in deltas[table] if rows
            ]
            if batches:
                wh.run(lambda conn, t=table, b=batches: load_group(conn, wh.dialect, wh.schema, t, b))
    finally:
        wh.close()


def prepare(settings: Settings, s3: Any, history: list[dict[str, Any]]) -> dict[int, PartitionState]:
    """Migrate the schema, archive the history in S3 and stream it into the warehouse."""
    wh = Warehouse(settings)
    migrate(wh)
    wh.close()
    archive(s3, settings, history)
    states: dict[int, PartitionState] = {}
    load_stream(settings, stream_deltas(history, states))
    return states


def dump(settings: Settings) -> dict[str, list[tuple]]:
    """Every row the reprocess can touch (timestamps of the run itself excluded)."""
    queries = {
        "engagement_daily": "SELECT day, event, event_count, user_count, is_final FROM {}.engagement_daily",
        "experiment_daily": "SELECT day, experiment_id, variant, event, event_count, user_count, is_final"
        " FROM {}.experiment_daily",
        "experiment_assignments": "SELECT experiment_id, user_key, variant, first_exposed_at"
        " FROM {}.experiment_assignments",
        "day_status": "SELECT day, is_final, cutoff_day FROM {}.day_status",
    }
    out = {}
    with psycopg2.connect(settings.warehouse_dsn) as conn, conn.cursor() as cur:
        for name, query in queries.items():
            cur.execute(psycopg2.sql.SQL(query).format(psycopg2.sql.Identifier(settings.warehouse_schema)))
            out[name] = sorted(cur.fetchall())
    conn.close()
    return out


def day_rows(state: dict[str, list[tuple]], day: date) -> dict[str, dict]:
    return {
        "engagement_daily": {
            (d.isoformat(), e): (n, u) for d, e, n, u, _ in state["engagement_daily"] if d == day
        },
        "experiment_daily": {
            (d.isoformat(), x, v, e): (n, u) for d, x, v, e, n, u, _ in state["experiment_daily"] if d == day
        },
    }


def truth_rows(history: list[dict[str, Any]], day: date) -> dict[str, dict]:
    truth = reference.truth(history)
    return {
        table: {(d.isoformat(), *rest): c for (d, *rest), c in truth[table].items() if d == day}
        for table in ("engagement_daily", "experiment_daily")
    }


def truth_assignments(history: list[dict[str, Any]], last_day: date) -> dict:
    return {
        k: v
        for k, v in reference.truth(history)["experiment_assignments"].items()
        if v[1][:10] <= str(last_day)
    }


def warehouse_assignments(state: dict[str, list[tuple]], last_day: date) -> dict:
    found = {(x, u): (v, format_ts(at)) for x, u, v, at in state["experiment_assignments"]}
    return {k: v for k, v in found.items() if v[1][:10] <= str(last_day)}


def ev(mid: str, user: str, ts: str, received: str, name: str = "Buy", **props: str) -> dict[str, Any]:
    return {"type": "track", "event": name, "messageId": mid, "userId": user, "anonymousId": None,
            "timestamp": f"2026-11-26T{ts}.000Z", "receivedAt": f"2026-11-26T{received}.000Z",
            "properties": props, "context": {}, "source": "dev"}  # fmt: skip


def exposure(mid: str, user: str, ts: str, received: str, variant: str = "a") -> dict[str, Any]:
    return ev(mid, user, ts, received, "Experiment Viewed", experiment_id="x", variation_id=variant)


DAYS = [DAY + timedelta(days=n) for n in range(-3, 2)]


def reprocess_days(example: Settings, days: list[date]) -> dict:
    """The nightly for each day, oldest first (the scheduler's order); the warehouse after."""
    for day in days:
        run_day(example, day, lateness_days=1, runner="inline", registry=CollectorRegistry())
    return dump(example)


def assert_days_equal_the_truth(once: dict, history: list[dict[str, Any]], days: list[date]) -> None:
    for day in days:
        assert day_rows(once, day) == truth_rows(history, day), day
    assert warehouse_assignments(once, days[-1]) == truth_assignments(history, days[-1])


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories(max_events=60, max_lag_minutes=1439))
def test_every_reprocessed_day_equals_the_truth_and_twice_is_once(s3, settings, pg_schema, history):
    example = fresh_example(settings, pg_schema)
    prepare(example, s3, history)
    once = reprocess_days(example, DAYS)
    assert_days_equal_the_truth(once, history, DAYS)
    again = run_day(example, DAY, lateness_days=1, runner="inline", registry=CollectorRegistry())
    assert dump(example) == once
    assert all(d["rows_changed"] == 0 for d in again.drift.values())


OUT_OF_ORDER = [  # the conversion is folded before the exposure that precedes it
    ev("m1", "u1", "11:00:00", "11:00:00"),
    exposure("m2", "u1", "10:00:00", "12:00:00"),
    ev("m3", "u2", "09:00:00", "09:00:01", "Home"),
    ev("m3", "u2", "09:00:00", "13:00:00", "Home"),  # a retried copy
]
IN_ORDER = [
    exposure("m2", "u1", "10:00:00", "10:00:00"),
    ev("m1", "u1", "11:00:00", "11:00:00"),
    ev("m3", "u2", "09:00:00", "09:00:01", "Home"),
    ev("m3", "u2", "09:00:00", "13:00:00", "Home"),
]


@pytest.mark.parametrize(("history", "drifts"), [(OUT_OF_ORDER, True), (IN_ORDER, False)])
def test_drift_is_measured_and_exported(s3, settings, pg_schema, history, drifts):
    prepare(settings, s3, history)
    registry = CollectorRegistry()
    result = run_day(settings, DAY, lateness_days=1, runner="inline", registry=registry)
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
    run_day(settings, DAY, lateness_days=1, runner="inline", registry=CollectorRegistry())
    late = [  # day D, received on D+3 > cutoff D+1: only the stream's delta can count it
        {**ev("m9", "u1", "18:00:00", "18:00:00"), "receivedAt": "2026-11-29T08:00:00.000Z"},
        {**ev("m8", "u3", "19:00:00", "19:00:00"), "receivedAt": "2026-11-29T08:00:01.000Z"},
    ]
    archive(s3, settings, late, first_offset=100)
    load_stream(settings, stream_deltas(late, states, first_offset=100))
    history = IN_ORDER + late
    assert day_rows(dump(settings), DAY) == truth_rows(history, DAY)
    result = run_day(settings, DAY, lateness_days=1, runner="inline", registry=CollectorRegistry())
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
        run_day(settings, DAY, lateness_days=1, runner="inline", registry=registry)
    assert dump(settings) == before
    assert registry.get_sample_value("eventpipe_reprocess_failures_total") == 1
    monkeypatch.undo()
    run_day(settings, DAY, lateness_days=1, runner="inline", registry=registry)
    once = dump(settings)
    assert day_rows(once, DAY) == truth_rows(OUT_OF_ORDER, DAY)
    run_day(settings, DAY, lateness_days=1, runner="inline", registry=registry)
    assert dump(settings) == once


def test_the_same_day_never_runs_twice_at_once(s3, settings, pg_schema):
    prepare(settings, s3, IN_ORDER)
    with day_lock(settings, DAY), pytest.raises(ReprocessBusy):
        run_day(settings, DAY, lateness_days=1, runner="inline", registry=CollectorRegistry())
    run_day(settings, DAY + timedelta(days=1), lateness_days=1, runner="inline", registry=CollectorRegistry())
