"""Funnels and retention as PostgreSQL functions, for Grafana's product dashboard (its SQL
cannot call Python). Created by ``views.ensure_report_views`` next to ``experiment_results``.

- ``funnel_persons(steps text[], from timestamptz, to timestamptz, within interval)`` returns
  ``step, event, persons``: the rules of ``eventpipe funnel`` (docs/funnels.md) for any number
  of steps, as a recursive query (step k+1 from each person's step-k match), with entry
  instants in [from, to) instead of whole days;
- ``retention_daily(cohort_event text, return_event text, from timestamptz, to timestamptz)``
  returns ``cohort, k, persons`` (``k`` NULL: the cohort's size): ``funnelsql.retention`` by day.

Both count persons (``sqlbuild.person_events``); tests hold them to the same reference as the CLI.
"""

from __future__ import annotations

from typing import Any

from psycopg2 import sql

from eventpipe.reports import funnelsql, sqlbuild

_NAME = sql.SQL("CASE WHEN e.type = 'track' THEN e.event ELSE e.type END")


def funnel_body(schema: str) -> sql.Composable:
    return sql.SQL(
        'WITH RECURSIVE ev AS (SELECT e.person, {name} AS name, e."timestamp" AS at FROM ({persons}) e '
        "WHERE e.type IN ('track', 'page', 'screen') AND e.\"timestamp\" >= p_from "
        'AND e."timestamp" < p_to + p_within), '
        "s (k, person, entry, at) AS ("
        "SELECT 1, ev.person, min(ev.at), min(ev.at) FROM ev WHERE ev.name = p_steps[1] AND ev.at < p_to "
        "GROUP BY ev.person "
        "UNION ALL "
        "SELECT s.k + 1, s.person, s.entry, n.at FROM s CROSS JOIN LATERAL ("
        "SELECT min(ev.at) AS at FROM ev WHERE ev.person = s.person AND ev.name = p_steps[s.k + 1] "
        "AND ev.at >= s.at AND ev.at <= s.entry + p_within) n "
        "WHERE s.k < cardinality(p_steps) AND n.at IS NOT NULL) "
        "SELECT k, p_steps[k], count(*)::bigint FROM s GROUP BY k ORDER BY k"
    ).format(name=_NAME, persons=sqlbuild.person_events(schema))


def statements(schema: str, conn: Any) -> list[sql.Composable]:
    retention = funnelsql.retention(
        schema, sql.SQL("p_cohort"), sql.SQL("p_return"), "day", window=(sql.SQL("p_from"), sql.SQL("p_to"))
    )
    return [
        sql.SQL(
            "CREATE OR REPLACE FUNCTION {}(p_steps text[], p_from timestamptz, p_to timestamptz, "
            "p_within interval) RETURNS TABLE (step integer, event text, persons bigint) "
            "LANGUAGE sql STABLE AS {}"
        ).format(sqlbuild.table(schema, "funnel_persons"), sql.Literal(funnel_body(schema).as_string(conn))),
        sql.SQL(
            "CREATE OR REPLACE FUNCTION {}(p_cohort text, p_return text, p_from timestamptz, "
            "p_to timestamptz) RETURNS TABLE (cohort date, k integer, persons bigint) "
            "LANGUAGE sql STABLE AS {}"
        ).format(sqlbuild.table(schema, "retention_daily"), sql.Literal(retention.as_string(conn))),
    ]
