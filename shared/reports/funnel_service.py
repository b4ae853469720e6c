"""Use cases ``funnel`` and ``retention``: run ``funnelsql``'s queries on a connection the
caller opened, and shape the counts with the pure ``funnels`` module. Read-only; a
psycopg2 error becomes ``WarehouseError`` (``warehouse._rows``)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from eventpipe.reports import funnelsql
from eventpipe.reports import warehouse as wh
from eventpipe.reports.funnels import (
    FunnelQuery,
    RetentionQuery,
    funnel_experiment_json,
    funnel_json,
    retention_json,
)


def _instant(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def _window(first: date, last: date) -> dict[str, datetime]:
    return {"start": _instant(first), "end": _instant(last + timedelta(days=1))}


def funnel_counts(
    conn: Any, schema: str, query: FunnelQuery, experiment: str | None = None
) -> dict[Any, list[int]]:
    """variant (``None`` without an experiment) -> persons at each step."""
    wh.require(conn, schema, "funnel_step_events")
    params: dict[str, Any] = _window(query.first_day, query.last_day)
    params["horizon"] = params["end"] + query.within
    rows = wh.rows(conn, funnelsql.funnel(schema, query.steps, query.within, experiment), params)
    # without an experiment there is always one funnel, of zeros when nobody entered
    out: dict[Any, list[int]] = {} if experiment is not None else {None: [0] * len(query.steps)}
    for variant, step, persons in rows:
        out.setdefault(variant, [0] * len(query.steps))[int(step) - 1] = int(persons)
    return out


def funnel(
    conn: Any, schema: str, query: FunnelQuery, experiment: str | None = None, control: str = "control"
) -> dict[str, Any]:
    """The documented JSON of ``eventpipe funnel`` (per variant with an experiment)."""
    counts = funnel_counts(conn, schema, query, experiment)
    if experiment is None:
        return funnel_json(query.steps, counts[None])
    return funnel_experiment_json(experiment, query.steps, counts, control)


def retention(conn: Any, schema: str, query: RetentionQuery) -> dict[str, Any]:
    """The documented JSON of ``eventpipe retention``."""
    wh.require(conn, schema, "funnel_step_events")
    statement = funnelsql.retention(schema, query.cohort_event, query.return_event, query.period)
    sizes: dict[date, int] = {}
    returned: dict[tuple[date, int], int] = {}
    for cohort, k, persons in wh.rows(conn, statement, _window(query.first_day, query.last_day)):
        if k is None:
            sizes[cohort] = int(persons)
        else:
            returned[(cohort, int(k))] = int(persons)
    return retention_json(query, sizes, returned)
