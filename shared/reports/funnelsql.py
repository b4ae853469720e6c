"""The SQL of funnels and retention cohorts, built with ``psycopg2.sql`` (pure).

Rules: ``eventpipe.reports.funnels``. Both read the view ``funnel_step_events`` (persons as
identity stitching defines them; migration 7, ``eventpipe.loader.dialects.models``), and
assignments come from ``sqlbuild.assignments``, the definition the experiment reports use.
The queries themselves use only what PostgreSQL and Redshift share (CTEs, ``min``/``count``,
aggregate window functions without a frame, ``AT TIME ZONE``, ``date_trunc``, date minus date,
interval literals): no ``DISTINCT ON``, no ``FILTER``, no JSON operators, no ``LATERAL``.

Parameters are bound by the caller: ``start``/``end`` (the UTC instants of ``from`` and
``to`` + 1 day) and, for funnels, ``horizon`` (``end`` + within).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from psycopg2 import sql

from eventpipe.reports import sqlbuild

START, END, HORIZON = sql.Placeholder("start"), sql.Placeholder("end"), sql.Placeholder("horizon")


def step_events(schema: str) -> sql.Composable:
    """The view ``funnel_step_events`` (migration 7, ``eventpipe.loader.dialects.models``):
    ``person, event, at`` of every engagement event."""
    return sql.SQL("SELECT s.person, s.event, s.at FROM {} s").format(
        sql.Identifier(schema, "funnel_step_events")
    )


def _step_events(
    names: Sequence[str | sql.Composable],
    until: sql.Composable,
    source: sql.Composable,
    start: sql.Composable = START,
) -> sql.Composable:
    """The step events of any of ``names`` from ``start`` to before ``until``:
    ``person, at`` and ``is_1``, ``is_2``, … (1 where the event is ``names[n - 1]``)."""
    named = [sql.Literal(n) if isinstance(n, str) else n for n in names]
    flags = [
        sql.SQL("CASE WHEN e.event = {} THEN 1 ELSE 0 END AS {}").format(n, sql.Identifier(f"is_{i}"))
        for i, n in enumerate(named, 1)
    ]
    return sql.SQL(
        "SELECT e.person, e.at, {flags} FROM ({source}) e "
        "WHERE e.at >= {start} AND e.at < {until} AND e.event IN ({names})"
    ).format(
        flags=sql.SQL(", ").join(flags),
        source=source,
        start=start,
        until=until,
        names=sql.SQL(", ").join(named),
    )


def _interval(within: timedelta | sql.Composable) -> sql.Composable:
    if not isinstance(within, timedelta):
        return within
    return sql.SQL("interval {}").format(sql.Literal(f"{int(within.total_seconds())} seconds"))


def _at(n: int) -> sql.Identifier:
    return sql.Identifier(f"at_{n}")


def _matched(n: int, within: sql.Composable, end: sql.Composable) -> sql.Composable:
    """The window level that adds ``at_n``, the person's matched time of step ``n``: step 1 the
    earliest entry before ``end``; a next step the earliest at or after the previous step's
    time and at most ``within`` after the entry. One ``min`` over the person's rows: no join."""
    if n == 1:
        condition = sql.SQL("e.is_1 = 1 AND e.at < {}").format(end)
    else:
        condition = sql.SQL("e.{is_n} = 1 AND e.at >= e.{previous} AND e.at <= e.at_1 + {within}").format(
            is_n=sql.Identifier(f"is_{n}"), previous=_at(n - 1), within=within
        )
    return sql.SQL("min(CASE WHEN {} THEN e.at END) OVER (PARTITION BY e.person) AS {}").format(
        condition, _at(n)
    )


def funnel(
    schema: str,
    steps: Sequence[str | sql.Composable],
    within: timedelta | sql.Composable,
    experiment: str | None = None,
    events: sql.Composable | None = None,
    assignments: sql.Composable | None = None,
    window: tuple[sql.Composable, sql.Composable, sql.Composable] = (START, END, HORIZON),
) -> sql.Composable:
    """``variant, step, persons``: persons who reached each step (1-based); ``variant`` is NULL
    without an experiment. ``events`` (rows ``person, event, at``) defaults to the view
    ``funnel_step_events``, ``assignments`` to the experiment reports' definition. Steps,
    ``within`` and ``window`` (start, end, horizon) may be other SQL, e.g. a function's
    arguments (``funnel_views``).

    One pass per step over the step events, each a window ``min`` per person (the step's
    matched time, from the previous one's): no self-join, so no planner estimate can turn it
    into nested loops over persons x events (445 s on 153k events before, docs/funnels.md)."""
    events = events if events is not None else step_events(schema)
    start, end, horizon = window
    level = sql.SQL("({})").format(_step_events(steps, horizon, events, start))
    carried = [sql.SQL("e.person, e.at")] + [sql.Identifier("e", f"is_{n}") for n in range(1, len(steps) + 1)]
    for n in range(1, len(steps) + 1):
        level = sql.SQL("(SELECT {carried}, {matched} FROM {level} e{entered})").format(
            carried=sql.SQL(", ").join(carried),
            matched=_matched(n, _interval(within), end),
            level=level,
            # persons who never entered leave after the first pass
            entered=sql.SQL(" WHERE e.at_1 IS NOT NULL") if n == 2 else sql.SQL(""),
        )
        carried.append(sql.Identifier("e", f"at_{n}"))
    reached = [sql.SQL("min(e.{}) AS {}").format(_at(n), _at(n)) for n in range(1, len(steps) + 1)]
    ctes = [
        sql.SQL(
            "p AS (SELECT e.person, {reached} FROM {level} e WHERE e.at_1 IS NOT NULL GROUP BY e.person)"
        ).format(reached=sql.SQL(", ").join(reached), level=level)
    ]
    if experiment is None:
        ctes.append(sql.SQL("fp AS (SELECT CAST(NULL AS varchar) AS variant, p.* FROM p)"))
    else:
        ctes.append(
            sql.SQL(
                "fp AS (SELECT a.variant, p.* FROM p JOIN ({assignments}) a ON a.user_key = p.person "
                "AND a.experiment_id = {experiment} AND a.first_exposed_at <= p.at_1)"
            ).format(
                assignments=assignments if assignments is not None else sqlbuild.assignments(schema),
                experiment=sql.Literal(experiment),
            )
        )
    counts = [
        sql.SQL(
            "SELECT fp.variant, {n} AS step, count(fp.{at}) AS persons FROM fp GROUP BY fp.variant"
        ).format(n=sql.Literal(n), at=_at(n))
        for n in range(1, len(steps) + 1)
    ]
    return sql.SQL("WITH {} {}").format(sql.SQL(", ").join(ctes), sql.SQL(" UNION ALL ").join(counts))


def _period(column: sql.Composable, period: str) -> sql.Composable:
    """The UTC day, or the Monday of the UTC ISO week, of a timestamptz as a date."""
    if period == "week":
        return sql.SQL("CAST(date_trunc('week', {} AT TIME ZONE 'UTC') AS date)").format(column)
    return sql.SQL("CAST({} AT TIME ZONE 'UTC' AS date)").format(column)


def retention(
    schema: str,
    cohort_event: str | sql.Composable,
    return_event: str | sql.Composable,
    period: str,
    events: sql.Composable | None = None,
    window: tuple[sql.Composable, sql.Composable] = (START, END),
) -> sql.Composable:
    """``cohort, k, persons``: ``k`` NULL for the cohort's size, else persons back in period
    ``k`` >= 1 after the cohort's. Events from ``start`` to before ``end`` only (``window``:
    other SQL for both, e.g. a function's arguments). The cohort is a window ``min`` per
    person over the same rows as the returns: no join (docs/funnels.md, speed)."""
    events = events if events is not None else step_events(schema)
    days = 7 if period == "week" else 1
    return sql.SQL(
        "WITH c AS (SELECT e.person, e.is_2, {period} AS period, "
        "min(CASE WHEN e.is_1 = 1 THEN {period} END) OVER (PARTITION BY e.person) AS cohort "
        "FROM ({events}) e) "
        "SELECT c.cohort, CAST(NULL AS integer) AS k, count(DISTINCT c.person) AS persons FROM c "
        "WHERE c.cohort IS NOT NULL GROUP BY c.cohort "
        "UNION ALL "
        "SELECT c.cohort, (c.period - c.cohort) / {days} AS k, count(DISTINCT c.person) AS persons FROM c "
        "WHERE c.is_2 = 1 AND c.period > c.cohort GROUP BY c.cohort, c.period"
    ).format(
        events=_step_events([cohort_event, return_event], window[1], events, window[0]),
        period=_period(sql.SQL("e.at"), period),
        days=sql.Literal(days),
    )
