"""The report's SQL, built with ``psycopg2.sql`` composition (pure: no connection needed).

One definition of each number serves both the CLI (parameters as placeholders) and the
warehouse objects of ``views.py`` (parameters as SQL function arguments), so the CLI and
a BI tool can never disagree. Semantics (DESIGN.md "Metrics semantics"):

- person (docs/contracts.md section 7): the raw id (``user_id``, else ``anonymous_id``)
  followed along at most two winning links of ``identities`` (per linked id the earliest
  by ``linked_at``, then ``message_id``): exact at query time, a link that lands
  re-attributes at once;
- assignment: a person's earliest exposure per experiment (ties: lowest variant), computed
  here from ``events`` (not read from ``experiment_assignments``, which holds what the
  stream and the nightly knew when they wrote it);
- exposure: track ``Experiment Viewed`` with ``experiment_id``/``variation_id``
  properties (fallback ``experiment_name``/``variation_name``), scalar and non-empty;
- goal event: a track whose ``event`` is the goal, or a page/screen call when the goal is
  ``page``/``screen``; an ``Experiment Viewed`` goal counts only exposures to the
  experiment itself;
- converter: an assigned user with a goal event at or after their first exposure.

Both warehouse dialects: every builder takes ``dialect`` (``postgres``, the default, or
``redshift``); only three pieces differ -- a property of the ``SUPER``/``jsonb`` column
(the loader dialect's ``json_id``), the winning links (``ROW_NUMBER`` on Redshift, which has
no ``DISTINCT ON``) and the variants list (``LISTAGG``; no arrays on Redshift). Redshift has
no table-returning functions either: ``views.py`` ships plain views there, and the CLI
runs these generated queries with parameters (same SQL, same numbers).
"""

from __future__ import annotations

from typing import Any

from psycopg2 import sql

POSTGRES, REDSHIFT = "postgres", "redshift"
# ``dialect`` below: a name, or a loader dialect object (its ``name`` decides; the Redshift
# path takes its JSON accessor and UTC date from it -- tests/support/redshift_harness.py)
DialectArg = Any
EXPOSURE_EVENT = "Experiment Viewed"
VARIANT_SEPARATOR = "\x1f"  # joins the variants on Redshift (LISTAGG): a control character no id holds
RAW_KEY = sql.SQL("coalesce(nullif(e.user_id, ''), e.anonymous_id)")
PERSON, RAW = "person", "raw_key"  # the id columns of ``person_events``
USER_KEY = sql.SQL("e.person")
# the CLI's parameters (the views pass function arguments instead)
EXPERIMENT_PARAM, GOAL_PARAM = sql.Placeholder("experiment"), sql.Placeholder("goal")


def dialect_name(dialect: DialectArg) -> str:
    return dialect if isinstance(dialect, str) else dialect.name


def loader_dialect(dialect: DialectArg) -> Any:
    from eventpipe.loader.dialects import get_dialect

    return get_dialect(dialect) if isinstance(dialect, str) else dialect


def _key(key: str) -> sql.Composable:
    return sql.SQL("e.{}").format(sql.Identifier(key))


def table(schema: str, name: str) -> sql.Composable:
    return sql.Identifier(schema, name)


def person_events(schema: str, dialect: DialectArg = POSTGRES) -> sql.Composable:
    """Every event with its ``person`` (two hops along the winning links) and ``raw_key``."""
    return sql.SQL(
        "SELECT e.*, coalesce(l2.user_id, l1.user_id, {raw}) AS person, {raw} AS raw_key FROM {events} e "
        "LEFT JOIN ({links}) l1 ON l1.anonymous_id = {raw} "
        "LEFT JOIN ({links}) l2 ON l2.anonymous_id = l1.user_id"
    ).format(raw=RAW_KEY, events=table(schema, "events"), links=_winning_links(schema, dialect))


def _winning_links(schema: str, dialect: DialectArg = POSTGRES) -> sql.Composable:
    """The earliest link of each id (``links.winning_links``'s rule) with PostgreSQL's
    ``DISTINCT ON``: the planner estimates its size as the number of linked ids, where a
    ``ROW_NUMBER() = 1`` filter is guessed at a handful of rows and turns the joins into
    nested loops (28 s instead of under 1 s on 55k events, bench/report.py). Redshift has no
    ``DISTINCT ON``: the loader's own ``ROW_NUMBER`` form there."""
    if dialect_name(dialect) == REDSHIFT:
        from eventpipe.loader.dialects.links import winning_links

        return winning_links(schema)
    return sql.SQL(
        "SELECT DISTINCT ON (i.anonymous_id) i.anonymous_id, i.user_id FROM {} i "
        "ORDER BY i.anonymous_id, i.linked_at, i.message_id"
    ).format(table(schema, "identities"))


def _events(schema: str, dialect: DialectArg = POSTGRES) -> sql.Composable:
    return sql.SQL("({})").format(person_events(schema, dialect))


def _prop(name: str, dialect: DialectArg = POSTGRES) -> sql.Composable:
    """A scalar property as text, like ``eventpipe.definitions._as_id`` (objects,
    arrays, booleans and empty strings are absent)."""
    if dialect_name(dialect) == REDSHIFT:
        return loader_dialect(dialect).json_id(sql.SQL("e.properties"), name)
    return sql.SQL(
        "CASE WHEN jsonb_typeof(e.properties -> {k}) IN ('string', 'number') "
        "THEN nullif(e.properties ->> {k}, '') END"
    ).format(k=sql.Literal(name))


def _exposure_experiment(dialect: DialectArg = POSTGRES) -> sql.Composable:
    return sql.SQL("coalesce({}, {})").format(
        _prop("experiment_id", dialect), _prop("experiment_name", dialect)
    )


def _exposure_variant(dialect: DialectArg = POSTGRES) -> sql.Composable:
    return sql.SQL("coalesce({}, {})").format(
        _prop("variation_id", dialect), _prop("variation_name", dialect)
    )


def exposures(schema: str, key: str = PERSON, dialect: DialectArg = POSTGRES) -> sql.Composable:
    """Every valid exposure: ``message_id, experiment_id, variant, user_key, timestamp, received_at``."""
    return sql.SQL(
        "SELECT x.* FROM (SELECT e.message_id, {exp} AS experiment_id, {var} AS variant, "
        '{uk} AS user_key, e."timestamp", e.received_at FROM {events} e '
        "WHERE e.type = 'track' AND e.event = {exposure}) x "
        "WHERE x.experiment_id IS NOT NULL AND x.variant IS NOT NULL"
    ).format(
        exp=_exposure_experiment(dialect),
        var=_exposure_variant(dialect),
        uk=_key(key),
        events=_events(schema, dialect),
        exposure=sql.Literal(EXPOSURE_EVENT),
    )


def assignments(schema: str, key: str = PERSON, dialect: DialectArg = POSTGRES) -> sql.Composable:
    """``experiment_id, user_key, variant, first_exposed_at``: each person's earliest
    exposure per experiment (ties: lowest variant, as ``eventpipe.rollup.assign``)."""
    return sql.SQL(
        "SELECT r.experiment_id, r.user_key, r.variant, r.first_exposed_at FROM ("
        'SELECT x.experiment_id, x.user_key, x.variant, x."timestamp" AS first_exposed_at, '
        'ROW_NUMBER() OVER (PARTITION BY x.experiment_id, x.user_key ORDER BY x."timestamp", x.variant) '
        "AS rn FROM ({exposures}) x) r WHERE r.rn = 1"
    ).format(exposures=exposures(schema, key, dialect))


def _assignments(schema: str, key: str = PERSON, dialect: DialectArg = POSTGRES) -> sql.Composable:
    return sql.SQL("({})").format(assignments(schema, key, dialect))


def _goal_match(
    experiment: sql.Composable, goal: sql.Composable, dialect: DialectArg = POSTGRES
) -> sql.Composable:
    return sql.SQL(
        "((e.type = 'track' AND e.event = {goal}) OR (e.type IN ('page', 'screen') AND e.type = {goal})) "
        "AND (e.type <> 'track' OR e.event <> {exposure} OR ({exp} = {experiment} AND {var} IS NOT NULL))"
    ).format(
        goal=goal,
        exposure=sql.Literal(EXPOSURE_EVENT),
        exp=_exposure_experiment(dialect),
        var=_exposure_variant(dialect),
        experiment=experiment,
    )


def variant_counts(
    schema: str,
    experiment: sql.Composable,
    goal: sql.Composable,
    key: str = PERSON,
    dialect: DialectArg = POSTGRES,
) -> sql.Composable:
    """``variant, users, converters, rate`` of one experiment and goal, by variant; ``key``
    ``RAW`` counts raw ids instead of persons (what an unstitched pipeline would say)."""
    return sql.SQL(
        'WITH goal AS (SELECT {uk} AS user_key, max(e."timestamp") AS last_at FROM {events} e '
        "WHERE {match} GROUP BY 1) "
        "SELECT a.variant, count(*)::bigint AS users, "
        "sum(CASE WHEN g.last_at >= a.first_exposed_at THEN 1 ELSE 0 END)::bigint AS converters, "
        "avg(CASE WHEN g.last_at >= a.first_exposed_at THEN 1.0 ELSE 0.0 END)::double precision AS rate "
        "FROM {assignments} a LEFT JOIN goal g ON g.user_key = a.user_key "
        "WHERE a.experiment_id = {experiment} GROUP BY a.variant ORDER BY a.variant"
    ).format(
        uk=_key(key),
        events=_events(schema, dialect),
        match=_goal_match(experiment, goal, dialect),
        assignments=_assignments(schema, key, dialect),
        experiment=experiment,
    )


def conversions_all(schema: str, dialect: DialectArg = POSTGRES) -> sql.Composable:
    """``experiment_id, variant, event, converters`` for every goal event at once (the BI view)."""
    return sql.SQL(
        'WITH goal AS (SELECT user_key, event, exposure_experiment, max("timestamp") AS last_at FROM ('
        "SELECT {uk} AS user_key, CASE WHEN e.type = 'track' THEN e.event ELSE e.type END AS event, "
        "CASE WHEN e.type = 'track' AND e.event = {exposure} AND {var} IS NOT NULL THEN {exp} END "
        'AS exposure_experiment, e."timestamp" FROM {events} e '
        "WHERE e.type IN ('track', 'page', 'screen')) u WHERE event IS NOT NULL GROUP BY 1, 2, 3) "
        "SELECT a.experiment_id, a.variant, g.event, count(*)::bigint AS converters "
        "FROM {assignments} a JOIN goal g ON g.user_key = a.user_key AND g.last_at >= a.first_exposed_at "
        "AND (g.event <> {exposure} OR g.exposure_experiment = a.experiment_id) "
        "GROUP BY 1, 2, 3"
    ).format(
        uk=USER_KEY,
        exposure=sql.Literal(EXPOSURE_EVENT),
        var=_exposure_variant(dialect),
        exp=_exposure_experiment(dialect),
        events=_events(schema, dialect),
        assignments=_assignments(schema, dialect=dialect),
    )


def variant_users_all(schema: str, dialect: DialectArg = POSTGRES) -> sql.Composable:
    return sql.SQL(
        "SELECT experiment_id, variant, count(*)::bigint AS users, min(first_exposed_at) AS first_exposed_at "
        "FROM {assignments} a GROUP BY 1, 2"
    ).format(assignments=_assignments(schema, dialect=dialect))


def multi_exposure(schema: str, experiment: sql.Composable, dialect: DialectArg = POSTGRES) -> sql.Composable:
    """``multi, exposed``: users who saw more than one variant, and all exposed users."""
    return sql.SQL(
        "SELECT coalesce(sum(CASE WHEN n > 1 THEN 1 ELSE 0 END), 0)::bigint, count(*)::bigint FROM "
        "(SELECT user_key, count(DISTINCT variant) AS n FROM ({exposures}) x "
        "WHERE experiment_id = {experiment} GROUP BY user_key) u"
    ).format(exposures=exposures(schema, dialect=dialect), experiment=experiment)


def experiment_list(schema: str, dialect: DialectArg = POSTGRES) -> sql.Composable:
    """Per experiment: variants (an array; on Redshift one text joined by
    ``VARIANT_SEPARATOR``), exposures, exposed users, first and last exposure."""
    variants = sql.SQL("array_agg(DISTINCT variant ORDER BY variant)")
    if dialect_name(dialect) == REDSHIFT:
        variants = sql.SQL("LISTAGG(DISTINCT variant, {}) WITHIN GROUP (ORDER BY variant)").format(
            sql.Literal(VARIANT_SEPARATOR)
        )
    return sql.SQL(
        "SELECT experiment_id, {variants}, count(*)::bigint, "
        'count(DISTINCT user_key)::bigint, min("timestamp"), max("timestamp") '
        "FROM ({exposures}) x GROUP BY experiment_id ORDER BY experiment_id"
    ).format(variants=variants, exposures=exposures(schema, dialect=dialect))


def experiment_known(
    schema: str, experiment: sql.Composable, dialect: DialectArg = POSTGRES
) -> sql.Composable:
    """``assigned, exposed, first_exposed_at``: is the experiment anywhere, and since when."""
    return sql.SQL(
        "SELECT (SELECT count(*) FROM {assignments} a WHERE experiment_id = {experiment})::bigint, "
        "EXISTS (SELECT 1 FROM ({exposures}) x WHERE experiment_id = {experiment}), "
        "(SELECT min(first_exposed_at) FROM {assignments} a WHERE experiment_id = {experiment})"
    ).format(
        assignments=_assignments(schema, dialect=dialect),
        exposures=exposures(schema, dialect=dialect),
        experiment=experiment,
    )


def daily_users(schema: str, dialect: DialectArg = POSTGRES) -> sql.Composable:
    """``day, persons, raw_ids``: distinct engaged persons and raw ids per day (DAU)."""
    day = sql.SQL("(e.\"timestamp\" AT TIME ZONE 'UTC')::date")
    if dialect_name(dialect) == REDSHIFT:
        day = loader_dialect(dialect).utc_date(sql.SQL('e."timestamp"'))
    return sql.SQL(
        "SELECT {day} AS day, count(DISTINCT e.person)::bigint, "
        "count(DISTINCT e.raw_key)::bigint FROM {events} e WHERE e.type IN ('track', 'page', 'screen') "
        "GROUP BY 1 ORDER BY 1"
    ).format(day=day, events=_events(schema, dialect))


def results_all(schema: str, dialect: DialectArg = POSTGRES) -> sql.Composable:
    """``experiment_id, goal, variant, users, converters, rate`` for every goal some assigned
    person reached: ``variant_counts`` for all goals at once, as a plain view can hold it
    (Redshift has no table-returning functions). A goal nobody in the experiment reached has
    no rows here (``variant_counts`` gives it zero converters)."""
    return sql.SQL(
        "WITH u AS ({users}), c AS ({conversions}), g AS (SELECT DISTINCT experiment_id, event FROM c) "
        "SELECT u.experiment_id, g.event AS goal, u.variant, u.users, "
        "coalesce(c.converters, 0)::bigint AS converters, "
        "(coalesce(c.converters, 0)::double precision / u.users)::double precision AS rate "
        "FROM u JOIN g ON g.experiment_id = u.experiment_id "
        "LEFT JOIN c ON c.experiment_id = u.experiment_id AND c.variant = u.variant AND c.event = g.event"
    ).format(users=variant_users_all(schema, dialect), conversions=conversions_all(schema, dialect))
