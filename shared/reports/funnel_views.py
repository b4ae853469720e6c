"""Funnels and retention as PostgreSQL functions, for Grafana's product dashboard (its SQL
cannot call Python). Created by ``views.ensure_report_views`` next to ``experiment_results``.

- ``funnel_persons(steps text[], from timestamptz, to timestamptz, within interval)`` returns
  ``step, event, persons``: the rules of ``eventpipe funnel`` (docs/funnels.md) for 2 to
  ``MAX_STEPS`` steps, ``funnelsql.funnel`` itself over ``MAX_STEPS`` step slots (a slot past
  the array's end is NULL and matches nothing), with entry instants in [from, to) instead of
  whole days; steps nobody reached have no row;
- ``retention_daily(cohort_event text, return_event text, from timestamptz, to timestamptz)``
  returns ``cohort, k, persons`` (``k`` NULL: the cohort's size): ``funnelsql.retention`` by day.

Both count persons (``sqlbuild.person_events``); tests hold them to the same reference as the CLI.
"""

from __future__ import annotations

from typing import Any

from psycopg2 import sql

from eventpipe.reports import funnelsql, sqlbuild

MAX_STEPS = 10


def funnel_body(schema: str) -> sql.Composable:
    """PL/pgSQL: refuse more than ``MAX_STEPS`` steps, else the CLI's funnel query."""
    arg = sql.SQL
    counts = funnelsql.funnel(
        schema,
        [arg("p_steps[{}]").format(sql.Literal(n)) for n in range(1, MAX_STEPS + 1)],
        arg("p_within"),
        window=(arg("p_from"), arg("p_to"), arg("p_to + p_within")),
    )
    return sql.SQL(
        "#variable_conflict use_column\n"
        "BEGIN IF cardinality(p_steps) > {max} THEN "
        "RAISE EXCEPTION 'funnel_persons: at most {max} steps, got %', cardinality(p_steps); END IF; "
        "RETURN QUERY SELECT CAST(f.step AS integer), p_steps[f.step], CAST(f.persons AS bigint) "
        "FROM ({counts}) f WHERE f.step <= cardinality(p_steps) AND f.persons > 0 ORDER BY f.step; END"
    ).format(max=sql.SQL(str(MAX_STEPS)), counts=counts)


def statements(schema: str, conn: Any) -> list[sql.Composable]:
    retention = funnelsql.retention(
        schema, sql.SQL("p_cohort"), sql.SQL("p_return"), "day", window=(sql.SQL("p_from"), sql.SQL("p_to"))
    )
    return [
        sql.SQL(
            "CREATE OR REPLACE FUNCTION {}(p_steps text[], p_from timestamptz, p_to timestamptz, "
            "p_within interval) RETURNS TABLE (step integer, event text, persons bigint) "
            "LANGUAGE plpgsql STABLE AS {}"
        ).format(sqlbuild.table(schema, "funnel_persons"), sql.Literal(funnel_body(schema).as_string(conn))),
        sql.SQL(
            "CREATE OR REPLACE FUNCTION {}(p_cohort text, p_return text, p_from timestamptz, "
            "p_to timestamptz) RETURNS TABLE (cohort date, k integer, persons bigint) "
            "LANGUAGE sql STABLE AS {}"
        ).format(sqlbuild.table(schema, "retention_daily"), sql.Literal(retention.as_string(conn))),
    ]
