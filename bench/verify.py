"""``eventpipe verify`` benchmark: seconds to verify one day of N events in PostgreSQL, side
by side in the same run with the floor of any such check, one scan of the day's events
(``count(*)``, distinct users) on the same table.

The day's aggregates are filled in first from the same events with the production rollup
(``eventpipe.rollup``, what the nightly job runs), so the verify being timed compares equal
rows and must find none differing (checked: a benchmark of a wrong answer is no figure).
Bounded: 100k events of one day, in a schema of its own, dropped after.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg2
from psycopg2 import sql

from eventpipe.bootstrap import build_warehouse
from eventpipe.events import normalize, user_key
from eventpipe.loader.batches import batch_from_rows
from eventpipe.loader.load import load_group
from eventpipe.loader.verify import verify_day
from eventpipe.loader.warehouse import migrate
from eventpipe.rollup import dedup, rollup_user
from eventpipe.settings import Settings
from eventpipe.synthetic import TrafficShape, messages

EVENTS_WANTED = 100_000
DAY = date(2026, 11, 20)


def _events() -> list[dict[str, Any]]:
    now = datetime.combine(DAY, datetime.min.time(), tzinfo=UTC) + timedelta(hours=23)
    out: list[dict[str, Any]] = []
    seed = 7
    while len(out) < EVENTS_WANTED:
        for msg in messages(seed=seed, shape=TrafficShape(users=2000, duplicate_rate=0.0), now=now):
            out.append(normalize(msg, event_type=None, received_at=now, source="bench"))
        seed += 1
    return [e for e in out[:EVENTS_WANTED] if e["timestamp"].startswith(str(DAY))]


def _rows(events: list[dict[str, Any]]) -> dict[str, list[tuple]]:
    """The day's rows per raw user key, as the stream counts a provisional day (the day is
    left provisional, so verify counts raw ids too; a final day would count persons)."""
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in dedup(events):
        by_user[user_key(event) or ""].append(event)
    counts: dict[str, dict[tuple, list[int]]] = {"engagement_daily": {}, "experiment_daily": {}}
    assignments = []
    for user, mine in by_user.items():
        rolled = rollup_user(mine, days={DAY})
        for table, rows in (("engagement_daily", rolled.engagement), ("experiment_daily", rolled.experiment)):
            for key, n in rows.items():
                total = counts[table].setdefault(key, [0, 0])
                total[0], total[1] = total[0] + n, total[1] + 1
        assignments += [(x, user, a.variant, a.first_exposed_at) for x, a in rolled.assignments.items()]
    return {
        "engagement_daily": [(*k, n, u, True) for k, (n, u) in counts["engagement_daily"].items()],
        "experiment_daily": [(*k, n, u, True) for k, (n, u) in counts["experiment_daily"].items()],
        "experiment_assignments": assignments,
    }


def _fill(settings: Settings, events: list[dict[str, Any]]) -> None:
    wh = build_warehouse(settings)
    try:
        migrate(wh)
        for at in range(0, len(events), 20_000):
            batch = batch_from_rows(f"bench/verify/{at}.jsonl.gz", "events", events[at : at + 20_000])
            wh.run(lambda conn, b=batch: load_group(conn, wh.dialect, wh.schema, "events", [b]))
    finally:
        wh.close()
    with psycopg2.connect(settings.warehouse_dsn) as conn, conn.cursor() as cur:
        for table, rows in _rows(events).items():
            marks = sql.SQL(", ").join(sql.Placeholder() * len(rows[0])) if rows else None
            for row in rows:
                cur.execute(
                    sql.SQL("INSERT INTO {} VALUES ({})").format(sql.Identifier(wh.schema, table), marks), row
                )
    conn.close()


def _floor(settings: Settings) -> float:
    query = sql.SQL(
        "SELECT count(*), count(DISTINCT coalesce(nullif(user_id, ''), anonymous_id)) FROM {} "
        'WHERE "timestamp" >= %s AND "timestamp" < %s'
    ).format(sql.Identifier(settings.warehouse_schema, "events"))
    start = datetime.combine(DAY, datetime.min.time(), tzinfo=UTC)
    with psycopg2.connect(settings.warehouse_dsn) as conn, conn.cursor() as cur:
        began = time.monotonic()
        cur.execute(query, (start, start + timedelta(days=1)))
        cur.fetchone()
        took = time.monotonic() - began
    conn.close()
    return took


def run(repeats: int = 3) -> dict[str, Any]:
    settings = Settings().model_copy(update={"warehouse_schema": f"bench_verify_{uuid.uuid4().hex[:8]}"})
    events = _events()
    try:
        _fill(settings, events)
        best_verify = best_floor = float("inf")
        wh = build_warehouse(settings)
        for _ in range(repeats):  # alternate, keep the best of each (a shared machine)
            try:
                began = time.monotonic()
                result = wh.run(lambda conn: verify_day(conn, wh.dialect, wh.schema, DAY))
                best_verify = min(best_verify, time.monotonic() - began)
            finally:
                wh.close()
            if not result.ok:
                found = {t: len(rows) for t, rows in result.differing.items()}
                raise AssertionError(f"verify found rows differing in a correct day: {found}")
            best_floor = min(best_floor, _floor(settings))
    finally:
        with psycopg2.connect(settings.warehouse_dsn) as conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(settings.warehouse_schema))
            )
        conn.close()
    return {"events": len(events), "verify_s": round(best_verify, 3), "scan_floor_s": round(best_floor, 3)}
