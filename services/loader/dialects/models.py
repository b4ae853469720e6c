"""The building blocks of funnels and retention as warehouse views (migration 7), for the
funnel and retention queries (``eventpipe.reports.funnelsql`` reads ``funnel_step_events``),
for analysts' own SQL, and for the data tests that hold them (docs/checks.md):

- ``persons``: ``raw_id, person``, one row per raw id (``userId``, else ``anonymousId``) of
  ``events``; the person is the raw id followed along at most two winning links of
  ``identities`` (docs/contracts.md section 7), exact at query time;
- ``funnel_step_events``: ``message_id, person, event, at, day``, one row per engagement event
  (a track call named by its ``event``, page/screen calls named ``page``/``screen``), ``at`` the
  corrected timestamp, ``day`` its UTC date;
- ``retention_cohorts``: ``event, person, first_day, first_week``: per engagement event and
  person, the UTC day and ISO week (its Monday) of their first such event, all time. (The
  ``retention`` command's cohorts are the first event *within its range*, so it reads
  ``funnel_step_events``; this view is the all-time answer and what the checks hold.)

The winning links are PostgreSQL's ``DISTINCT ON`` there (the planner estimates it as the
number of linked ids; a ``ROW_NUMBER() = 1`` filter is guessed at a handful of rows and turns
the joins into nested loops, ``eventpipe.reports.sqlbuild``) and the loader's ``ROW_NUMBER``
form on Redshift, which has no ``DISTINCT ON``. The rest is SQL both dialects run.
"""

from __future__ import annotations

from psycopg2 import sql

from eventpipe.loader.dialects import Dialect
from eventpipe.loader.dialects.common import ident
from eventpipe.loader.dialects.links import winning_links

PERSONS, STEP_EVENTS, COHORTS = "persons", "funnel_step_events", "retention_cohorts"
RAW_ID = sql.SQL("coalesce(nullif(e.user_id, ''), e.anonymous_id)")
ENGAGEMENT_NAME = sql.SQL("CASE WHEN e.type = 'track' THEN e.event ELSE e.type END")


def _links(dialect: Dialect, schema: str) -> sql.Composable:
    if dialect.name == "redshift":
        return winning_links(schema)
    return sql.SQL(
        "SELECT DISTINCT ON (i.anonymous_id) i.anonymous_id, i.user_id FROM {} i "
        "ORDER BY i.anonymous_id, i.linked_at, i.message_id"
    ).format(ident(schema, "identities"))


def _stitched(dialect: Dialect, schema: str, raw: sql.Composable) -> sql.Composable:
    """``LEFT JOIN``s that give ``person`` for the raw id ``raw`` (two hops)."""
    links = _links(dialect, schema)
    return sql.SQL(
        "LEFT JOIN ({links}) l1 ON l1.anonymous_id = {raw} "
        "LEFT JOIN ({links}) l2 ON l2.anonymous_id = l1.user_id"
    ).format(links=links, raw=raw)


PERSON = sql.SQL("coalesce(l2.user_id, l1.user_id, {})")


def persons_view(dialect: Dialect, schema: str) -> sql.Composed:
    return sql.SQL(
        "CREATE OR REPLACE VIEW {view} AS SELECT r.raw_id, {person} AS person FROM "
        "(SELECT DISTINCT {raw} AS raw_id FROM {events} e) r {stitched}"
    ).format(
        view=ident(schema, PERSONS),
        person=PERSON.format(sql.SQL("r.raw_id")),
        raw=RAW_ID,
        events=ident(schema, "events"),
        stitched=_stitched(dialect, schema, sql.SQL("r.raw_id")),
    )


def step_events_view(dialect: Dialect, schema: str) -> sql.Composed:
    return sql.SQL(
        "CREATE OR REPLACE VIEW {view} AS SELECT e.message_id, {person} AS person, {name} AS event, "
        'e."timestamp" AS at, {day} AS day FROM {events} e {stitched} '
        "WHERE e.type IN ('track', 'page', 'screen') AND {name} IS NOT NULL"
    ).format(
        view=ident(schema, STEP_EVENTS),
        person=PERSON.format(RAW_ID),
        name=ENGAGEMENT_NAME,
        day=dialect.utc_date(sql.SQL('e."timestamp"')),
        events=ident(schema, "events"),
        stitched=_stitched(dialect, schema, RAW_ID),
    )


def cohorts_view(schema: str) -> sql.Composed:
    return sql.SQL(
        "CREATE OR REPLACE VIEW {view} AS SELECT s.event, s.person, min(s.day) AS first_day, "
        "CAST(date_trunc('week', min(s.day)) AS date) AS first_week FROM {steps} s GROUP BY s.event, s.person"
    ).format(view=ident(schema, COHORTS), steps=ident(schema, STEP_EVENTS))


def statements(dialect: Dialect, schema: str) -> list[sql.Composed]:
    return [persons_view(dialect, schema), step_events_view(dialect, schema), cohorts_view(schema)]
