"""The nightly reprocess against the real warehouse: a history archived in S3 and streamed
into a fresh schema, the nightly run day by day, and the warehouse's rows side by side with
the reference truth (tests/reference.py)."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

import psycopg2
from prometheus_client import CollectorRegistry

from eventpipe.bootstrap import build_reprocess, build_warehouse
from eventpipe.loader.batches import batch_from_rows
from eventpipe.loader.load import load_group
from eventpipe.loader.reprocess.pipeline import DayResult, run_day
from eventpipe.loader.verify import verify_day
from eventpipe.loader.warehouse import migrate
from eventpipe.settings import Settings
from eventpipe.stream.fold import TABLES, PartitionState
from eventpipe.timeutil import format_ts
from tests import reference
from tests.support.archive import archive, stream_deltas
from tests.support.histories import DAY


def run_nightly(settings: Settings, day: date, **options: Any) -> DayResult:
    """``run_day`` with the adapters the composition root builds, as ``eventpipe reprocess``
    runs it (``options``: ``run_day``'s own)."""
    return run_day(settings, day, adapters=build_reprocess(settings), **options)


def load_stream(settings: Settings, deltas: dict[str, list]) -> None:
    wh = build_warehouse(settings)
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
    wh = build_warehouse(settings)
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


def reprocess_days(example: Settings, days: list[date], engine: str = "mrjob") -> dict:
    """The nightly for each day, oldest first (the scheduler's order); the warehouse after."""
    for day in days:
        run_nightly(
            example, day, lateness_days=1, runner="inline", registry=CollectorRegistry(), engine=engine
        )
    return dump(example)


def assert_days_equal_the_truth(once: dict, history: list[dict[str, Any]], days: list[date]) -> None:
    for day in days:
        assert day_rows(once, day) == truth_rows(history, day), day
    assert warehouse_assignments(once, days[-1]) == truth_assignments(history, days[-1])


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


def load_events(settings: Settings, history: list[dict[str, Any]]) -> None:
    wh = build_warehouse(settings)
    try:
        key = f"{settings.s3_prefix}raw/test/events-{uuid.uuid4().hex[:8]}.jsonl.gz"  # one per call
        batch = batch_from_rows(key, "events", history)
        wh.run(lambda conn: load_group(conn, wh.dialect, wh.schema, "events", [batch]))
    finally:
        wh.close()


def verify(settings: Settings, day: date = DAY) -> Any:
    wh = build_warehouse(settings)
    try:
        return wh.run(lambda conn: verify_day(conn, wh.dialect, wh.schema, day))
    finally:
        wh.close()
