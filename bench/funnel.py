"""Benchmark of ``eventpipe funnel`` and ``eventpipe retention`` (issue 18) beside a ceiling.

The warehouse is filled through the loader's own load transaction (``bench.report.load``) with
the demo's synthetic traffic spread over ``DAYS`` days (three ISO weeks), where most of each
day's visitors were there before (visitor ``n`` of day ``d`` is ``anon-<n + d * users/5>``,
likewise user ids), so persons span days and weeks and retention has returns. Then,
in the same run on the same schema, best of 3 each:

- the 3-step purchase funnel over all days (``funnel_service.funnel``, the CLI's code path);
- the weekly page -> Order Completed retention over the same days;
- the ceiling: one scan of the same events over the same range,
  ``count(*), count(DISTINCT raw id)``: no query over these events can be much faster.

Bounded: ``EVENTPIPE_BENCH_FUNNEL_USERS`` (default 700 visitors a day: 161k events sent,
158k distinct, 3,500 persons over the 21 days) in a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from time import perf_counter
from typing import Any

from psycopg2 import sql

from bench.loader import drop_schemas
from bench.report import load
from eventpipe.events import normalize
from eventpipe.reports import funnel_service
from eventpipe.reports import warehouse as wh
from eventpipe.reports.funnels import FunnelQuery, RetentionQuery
from eventpipe.settings import Settings
from eventpipe.synthetic import TrafficShape, messages

FIRST_DAY, DAYS = date(2026, 1, 5), 21  # a Monday: three whole ISO weeks
STEPS = ("Product Viewed", "Product Added", "Order Completed")
_SEEDED_ID = re.compile(r"^(anon|user)-\d+-(\d+)$")


def _returning(message: dict[str, Any], shift: int) -> dict[str, Any]:
    """``anon-<seed>-N`` -> ``anon-<N + shift>`` (likewise user ids): visitors of other days."""
    for field in ("anonymousId", "userId"):
        if field in message:
            found = _SEEDED_ID.match(message[field])
            if found:
                message[field] = f"{found.group(1)}-{int(found.group(2)) + shift}"
    return message


def traffic(users: int, days: int = DAYS) -> list[dict[str, Any]]:
    out = []
    for day in range(days):
        now = datetime.combine(FIRST_DAY + timedelta(days=day), time(12), UTC)
        for m in messages(seed=100 + day, shape=TrafficShape(users=users), now=now):
            shifted = _returning(m, day * (users // 5))
            out.append(normalize(shifted, event_type=None, received_at=now, source="bench"))
    return out


def _ceiling(conn: Any, schema: str, start: datetime, end: datetime) -> Any:
    statement = sql.SQL(
        "SELECT count(*), count(DISTINCT coalesce(nullif(e.user_id, ''), e.anonymous_id)) FROM {} e "
        'WHERE e."timestamp" >= %(start)s AND e."timestamp" < %(end)s'
    ).format(sql.Identifier(schema, "events"))
    return wh.rows(conn, statement, {"start": start, "end": end})[0]


def _best(conn: Any, work: Callable[[Any], Any], runs: int = 3) -> tuple[float, Any]:
    times, found = [], None
    for _ in range(runs):
        started = perf_counter()
        found = work(conn)
        times.append(perf_counter() - started)
    return min(times), found


def run(users: int | None = None) -> dict[str, Any]:
    n = users or int(os.environ.get("EVENTPIPE_BENCH_FUNNEL_USERS", "700"))
    settings = Settings(warehouse_schema=f"bench_funnel_{uuid.uuid4().hex[:8]}")
    schema, last_day = settings.warehouse_schema, FIRST_DAY + timedelta(days=DAYS - 1)
    funnel = FunnelQuery(STEPS, FIRST_DAY, last_day)
    retention = RetentionQuery("page", "Order Completed", "week", FIRST_DAY, last_day)
    window = funnel_service._window(FIRST_DAY, last_day)
    try:
        events = load(settings, traffic(n))
        with wh.connect(settings) as conn:
            ceiling_s, (scanned, raw_ids) = _best(conn, lambda c: _ceiling(c, schema, **window))
            funnel_s, found = _best(conn, lambda c: funnel_service.funnel(c, schema, funnel))
            retention_s, cohorts = _best(conn, lambda c: funnel_service.retention(c, schema, retention))
    finally:
        drop_schemas(settings, [schema])
    return {
        "sent_events": events,
        "events": scanned,  # distinct messageIds in the range: what every query here reads
        "raw_ids": raw_ids,
        "ceiling_s": round(ceiling_s, 3),
        "funnel_s": round(funnel_s, 3),
        "retention_s": round(retention_s, 3),
        "funnel_vs_ceiling": round(funnel_s / ceiling_s, 1),
        "retention_vs_ceiling": round(retention_s / ceiling_s, 1),
        "funnel_persons": [s["persons"] for s in found["steps"]],
        "retention_cohort_persons": sum(c["persons"] for c in cohorts["cohorts"]),
    }


if __name__ == "__main__":
    print(run())
