"""The SQL of funnels and retention cohorts, built with ``psycopg2.sql`` (pure).

Rules: ``eventpipe.reports.funnels``. Persons come from ``sqlbuild.person_events`` (two
hops along the winning links of ``identities``) and assignments from
``sqlbuild.assignments``, the same definitions the experiment reports use. The queries
themselves use only what PostgreSQL and Redshift share (CTEs, ``min``/``count``, joins,
``AT TIME ZONE``, ``date_trunc``, date minus date, interval literals): no ``DISTINCT ON``,
no ``FILTER``, no JSON operators, so they can move into a dialect unchanged.

Parameters are bound by the caller: ``start``/``end`` (the UTC instants of ``from`` and
``to`` + 1 day) and, for funnels, ``horizon`` (``end`` + within).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from psycopg2 import sql

from eventpipe.reports import sqlbuild

START, END, HORIZON = sql.Placeholder("start"), sql.Placeholder("end"), sql.Placeholder("horizon")


def matches(name: str | sql.Composable) -> sql.Composable:
    """An engagement event called ``name`` (a text, or SQL such as a function argument): a track
    call, or page/screen calls for ``page``/``screen``."""
    return sql.SQL(
        "((e.type = 'track' AND e.event = {n}) OR (e.type IN ('page', 'screen') AND e.type = {n}))"
    ).format(n=sql.Literal(name) if isinstance(name, str) else name)


def _step_events(
    names: Sequence[str | sql.Composable],
    until: sql.Composable,
    persons: sql.Composable,
    start: sql.Composable = START,
) -> sql.Composable:
    """The persons' events of any of ``names`` from ``start`` to before ``until``."""
    return sql.SQL(
        'SELECT e.person, e.type, e.event, e."timestamp" AS at FROM ({events}) e '
        'WHERE e."timestamp" >= {start} AND e."timestamp" < {until} AND ({any})'
    ).format(
        events=persons,
        start=start,
        until=until,
        any=sql.SQL(" OR ").join(matches(n) for n in names),
    )


def _interval(within: timedelta) -> sql.Composable:
    return sql.SQL("interval {}").format(sql.Literal(f"{int(within.total_seconds())} seconds"))


def funnel(
    schema: str,
    steps: Sequence[str],
    within: timedelta,
    experiment: str | None = None,
    persons: sql.Composable | None = None,
    assignments: sql.Composable | None = None,
) -> sql.Composable:
    """``variant, step, persons``: persons who reached each step (1-based); ``variant`` is NULL
    without an experiment. Steps nobody reached have no row. ``persons`` (events with a
    ``person`` column) and ``assignments`` default to the experiment reports' definitions."""
    persons = persons if persons is not None else sqlbuild.person_events(schema)
    ctes = [
        sql.SQL("ev AS ({})").format(_step_events(steps, HORIZON, persons)),
        sql.SQL(
            "s1 AS (SELECT e.person, min(e.at) AS entry, min(e.at) AS at FROM ev e "
            "WHERE {match} AND e.at < {end} GROUP BY e.person)"
        ).format(match=matches(steps[0]), end=END),
    ]
    for n in range(2, len(steps) + 1):
        ctes.append(
            sql.SQL(
                "{this} AS (SELECT s.person, s.entry, min(e.at) AS at FROM {previous} s "
                "JOIN ev e ON e.person = s.person AND {match} "
                "AND e.at >= s.at AND e.at <= s.entry + {within} "
                "GROUP BY s.person, s.entry)"
            ).format(
                this=sql.Identifier(f"s{n}"),
                previous=sql.Identifier(f"s{n - 1}"),
                match=matches(steps[n - 1]),
                within=_interval(within),
            )
        )
    if experiment is not None:
        ctes.append(
            sql.SQL(
                "asg AS (SELECT a.user_key, a.variant, a.first_exposed_at FROM ({}) a "
                "WHERE a.experiment_id = {})"
            ).format(
                assignments if assignments is not None else sqlbuild.assignments(schema),
                sql.Literal(experiment),
            )
        )
    counts = []
    for n in range(1, len(steps) + 1):
        source = sql.Identifier(f"s{n}")
        if experiment is None:
            counts.append(
                sql.SQL(
                    "SELECT CAST(NULL AS varchar) AS variant, {n} AS step, count(*) AS persons FROM {s}"
                ).format(n=sql.Literal(n), s=source)
            )
        else:
            counts.append(
                sql.SQL(
                    "SELECT a.variant, {n} AS step, count(*) AS persons FROM {s} s "
                    "JOIN asg a ON a.user_key = s.person AND a.first_exposed_at <= s.entry GROUP BY a.variant"
                ).format(n=sql.Literal(n), s=source)
            )
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
    persons: sql.Composable | None = None,
    window: tuple[sql.Composable, sql.Composable] = (START, END),
) -> sql.Composable:
    """``cohort, k, persons``: ``k`` NULL for the cohort's size, else persons back in period
    ``k`` >= 1 after the cohort's. Events from ``start`` to before ``end`` only (``window``:
    other SQL for both, e.g. a function's arguments)."""
    persons = persons if persons is not None else sqlbuild.person_events(schema)
    days = 7 if period == "week" else 1
    return sql.SQL(
        "WITH ev AS ({events}), "
        "cohort AS (SELECT e.person, {first_period} AS cohort FROM ev e WHERE {is_cohort} "
        "GROUP BY e.person), "
        "back AS (SELECT DISTINCT e.person, {period} AS period FROM ev e WHERE {is_return}) "
        "SELECT c.cohort, CAST(NULL AS integer) AS k, count(*) AS persons FROM cohort c GROUP BY c.cohort "
        "UNION ALL "
        "SELECT c.cohort, (b.period - c.cohort) / {days} AS k, count(*) AS persons FROM cohort c "
        "JOIN back b ON b.person = c.person AND b.period > c.cohort GROUP BY c.cohort, b.period"
    ).format(
        events=_step_events([cohort_event, return_event], window[1], persons, window[0]),
        first_period=_period(sql.SQL("min(e.at)"), period),
        is_cohort=matches(cohort_event),
        period=_period(sql.SQL("e.at"), period),
        is_return=matches(return_event),
        days=sql.Literal(days),
    )
