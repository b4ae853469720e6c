"""DESIGN.md's "Metrics semantics" as SQL over ``events`` (pure), and the diff of one day's
stored aggregates against it: what ``eventpipe verify`` runs (docs/contracts.md §8).

Independent of the stream's fold and of the nightly job: nothing here reads deltas,
corrections or ``experiment_assignments`` to compute the truth. Both dialects share this
SQL; only the JSON property access differs (``Dialect.json_id``). Each diff query returns
the rows that differ, ``key columns…, stored values…, expected values…``, a side's values
NULL where that side has no row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from psycopg2 import sql

from eventpipe.definitions import ANY_EVENT, EXPOSURE_EVENT
from eventpipe.loader.dialects import Dialect
from eventpipe.loader.dialects.common import cols, ident
from eventpipe.loader.dialects.links import winning_links

ENGAGEMENT_TYPES = ("track", "page", "screen")
# an event's raw user key (``eventpipe.events.user_key``) as SQL over an ``events`` row ``e``
RAW_KEY = sql.SQL("COALESCE(NULLIF(e.{}, ''), e.{})").format(ident("user_id"), ident("anonymous_id"))


def events_with_person(schema: str, stitched: bool) -> sql.Composable:
    """Every event with its ``person``: who a "user" is in every count verify makes (the one
    place that says it). Stitched (final days, contracts §7): the raw key followed along at
    most two winning links of ``identities``, as the nightly and the reports count. Not
    stitched (provisional days): the raw key (``userId``, else ``anonymousId``), as the
    stream counts."""
    raw, events = RAW_KEY, ident(schema, "events")
    if not stitched:
        return sql.SQL("SELECT e.*, {} AS person FROM {} AS e").format(raw, events)
    return sql.SQL(
        "SELECT e.*, COALESCE(l2.{u}, l1.{u}, {raw}) AS person FROM {events} AS e "
        "LEFT JOIN ({links}) AS l1 ON l1.{a} = {raw} LEFT JOIN ({links}) AS l2 ON l2.{a} = l1.{u}"
    ).format(u=ident("user_id"), a=ident("anonymous_id"), raw=raw, events=events, links=winning_links(schema))


@dataclass(frozen=True)
class Check:
    """One table's comparison: its key and value columns, and the SQL yielding differences."""

    table: str
    keys: tuple[str, ...]
    values: tuple[str, ...]
    query: sql.Composable


def _bounds(day: date) -> tuple[sql.Literal, sql.Literal]:
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return sql.Literal(start), sql.Literal(start + timedelta(days=1))


def _exposure(dialect: Dialect, alias: str) -> tuple[sql.Composable, sql.Composable]:
    """(experiment, variant) of an exposure event, ids first, names as the fallback."""
    props = ident(alias, "properties")
    json_id = dialect.json_id
    experiment = sql.SQL("COALESCE({}, {})").format(
        json_id(props, "experiment_id"), json_id(props, "experiment_name")
    )
    variant = sql.SQL("COALESCE({}, {})").format(
        json_id(props, "variation_id"), json_id(props, "variation_name")
    )
    return experiment, variant


def _day_events(dialect: Dialect, events: sql.Composable, day: date) -> sql.Composable:
    """The day's engagement events: ``person, name, ts, exposure_experiment``."""
    start, end = _bounds(day)
    experiment, variant = _exposure(dialect, "e")
    return sql.SQL(
        "SELECT e.person, CASE WHEN e.type = 'track' THEN e.event ELSE e.type END AS name, "
        'e."timestamp" AS ts, CASE WHEN e.type = \'track\' AND e.event = {x} AND {var} IS NOT NULL '
        "THEN {exp} END AS exposure_experiment FROM ({events}) AS e "
        "WHERE e.type IN ({types}) AND e.\"timestamp\" >= {start} AND e.\"timestamp\" < {end}"
    ).format(
        x=sql.Literal(EXPOSURE_EVENT), var=variant, exp=experiment, events=events,
        types=sql.SQL(", ").join(map(sql.Literal, ENGAGEMENT_TYPES)), start=start, end=end,
    )  # fmt: skip


def _assignments(dialect: Dialect, events: sql.Composable, before: sql.Literal) -> sql.Composable:
    """Every person's earliest exposure per experiment before ``before`` (ties: lowest variant)."""
    experiment, variant = _exposure(dialect, "e")
    exposures = sql.SQL(
        "SELECT {exp} AS experiment_id, {var} AS variant, e.person, e.\"timestamp\" AS ts "
        "FROM ({events}) AS e WHERE e.type = 'track' AND e.event = {x} AND e.\"timestamp\" < {before}"
    ).format(
        exp=experiment, var=variant, events=events,
        x=sql.Literal(EXPOSURE_EVENT), before=before,
    )  # fmt: skip
    return sql.SQL(
        "SELECT r.experiment_id, r.person, r.variant, r.ts AS first_exposed_at FROM ("
        "SELECT x.*, ROW_NUMBER() OVER (PARTITION BY x.experiment_id, x.person "
        "ORDER BY x.ts, x.variant) AS ep_rn "
        "FROM ({exposures}) AS x WHERE x.experiment_id IS NOT NULL AND x.variant IS NOT NULL) AS r "
        "WHERE r.ep_rn = 1"
    ).format(exposures=exposures)


def _diff(
    stored: sql.Composable, expected: sql.Composable, keys: Sequence[str], values: Sequence[str]
) -> sql.Composed:
    on = sql.SQL(" AND ").join(sql.SQL("s.{k} = t.{k}").format(k=ident(k)) for k in keys)
    differs = sql.SQL(" OR ").join(
        [sql.SQL("s.{k} IS NULL OR t.{k} IS NULL").format(k=ident(keys[0]))]
        + [sql.SQL("s.{v} <> t.{v}").format(v=ident(v)) for v in values]
    )
    return sql.SQL(
        "SELECT {k}, {sv}, {tv} FROM ({stored}) AS s FULL OUTER JOIN ({expected}) AS t ON {on} "
        "WHERE {differs} ORDER BY {o}"
    ).format(
        k=sql.SQL(", ").join(sql.SQL("COALESCE(s.{c}, t.{c})").format(c=ident(c)) for c in keys),
        sv=cols(values, "s"), tv=cols(values, "t"), stored=stored, expected=expected, on=on, differs=differs,
        o=sql.SQL(", ").join(sql.Literal(n + 1) for n in range(len(keys))),
    )  # fmt: skip


def _stored(schema: str, table: str, columns: Sequence[str], day: date) -> sql.Composed:
    return sql.SQL("SELECT {} FROM {} WHERE {} = {}").format(
        cols(columns), ident(schema, table), ident("day"), sql.Literal(day)
    )


def engagement_check(dialect: Dialect, schema: str, day: date, stitched: bool) -> Check:
    keys, values = ("event",), ("event_count", "user_count")
    expected = sql.SQL(
        "SELECT d.name AS event, COUNT(*) AS event_count, COUNT(DISTINCT d.person) AS user_count "
        "FROM ({ev}) AS d WHERE d.name IS NOT NULL GROUP BY d.name "
        "UNION ALL SELECT {any}, COUNT(*), COUNT(DISTINCT d.person) FROM ({ev}) AS d "
        "WHERE d.name IS NOT NULL HAVING COUNT(*) > 0"
    ).format(ev=_day_events(dialect, events_with_person(schema, stitched), day), any=sql.Literal(ANY_EVENT))
    stored = _stored(schema, "engagement_daily", (*keys, *values), day)
    return Check("engagement_daily", keys, values, _diff(stored, expected, keys, values))


def experiment_check(dialect: Dialect, schema: str, day: date, stitched: bool) -> Check:
    """Each engagement event of the day counts under every experiment its person was
    assigned to at or before it; an exposure only under its own experiment."""
    keys, values = ("experiment_id", "variant", "event"), ("event_count", "user_count")
    _, end = _bounds(day)
    expected = sql.SQL(
        "SELECT a.experiment_id, a.variant, d.name AS event, COUNT(*) AS event_count, "
        "COUNT(DISTINCT d.person) AS user_count FROM ({ev}) AS d JOIN ({a}) AS a ON a.person = d.person "
        "AND d.ts >= a.first_exposed_at WHERE d.name IS NOT NULL "
        "AND (d.name <> {x} OR d.exposure_experiment = a.experiment_id) GROUP BY 1, 2, 3"
    ).format(
        ev=_day_events(dialect, events_with_person(schema, stitched), day),
        a=_assignments(dialect, events_with_person(schema, stitched), end),
        x=sql.Literal(EXPOSURE_EVENT),
    )
    stored = _stored(schema, "experiment_daily", (*keys, *values), day)
    return Check("experiment_daily", keys, values, _diff(stored, expected, keys, values))


def assignments_check(dialect: Dialect, schema: str, day: date, stitched: bool) -> Check:
    """Assignments whose first exposure falls on the day, on either side."""
    keys, values = ("experiment_id", "user_key"), ("variant", "first_exposed_at")
    start, end = _bounds(day)
    expected = sql.SQL(
        "SELECT a.experiment_id, a.person AS user_key, a.variant, a.first_exposed_at FROM ({a}) AS a "
        "WHERE a.first_exposed_at >= {start}"
    ).format(a=_assignments(dialect, events_with_person(schema, stitched), end), start=start)
    stored = sql.SQL("SELECT {} FROM {} WHERE {f} >= {start} AND {f} < {end}").format(
        cols((*keys, *values)), ident(schema, "experiment_assignments"), f=ident("first_exposed_at"),
        start=start, end=end,
    )  # fmt: skip
    return Check("experiment_assignments", keys, values, _diff(stored, expected, keys, values))


def checks(dialect: Dialect, schema: str, day: date, stitched: bool) -> list[Check]:
    """The day's checks; ``stitched``: users are persons (a final day), else raw ids."""
    builders = (engagement_check, experiment_check, assignments_check)
    return [builder(dialect, schema, day, stitched) for builder in builders]


def day_state(schema: str, day: date) -> sql.Composed:
    """``is_final`` of the day (no row: provisional)."""
    return sql.SQL("SELECT {} FROM {} WHERE {} = {}").format(
        ident("is_final"), ident(schema, "day_status"), ident("day"), sql.Literal(day)
    )
