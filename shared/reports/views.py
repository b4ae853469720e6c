"""Experiment results as warehouse objects, for analysts who never run the CLI.

``ensure_report_views(conn, schema)`` creates or replaces, idempotently and in one
transaction (serialised by an advisory lock, so concurrent callers don't collide):

- view ``experiment_exposures``: one row per valid exposure event
  (``message_id, experiment_id, variant, user_key, timestamp, received_at``);
- view ``experiment_variant_users``: ``experiment_id, variant, users, first_exposed_at``;
- view ``experiment_conversions``: ``experiment_id, variant, event, converters`` for every
  engagement event name (Grafana: ``WHERE experiment_id = $exp AND event = $goal``);
- view ``experiment_results_by_goal``: ``experiment_id, goal, variant, users, converters,
  rate`` for every goal someone assigned reached (``sqlbuild.results_all``);
- PostgreSQL only, function ``experiment_results(experiment text, goal text)`` returning
  ``variant, users, converters, rate``: exactly the counts of ``eventpipe experiments
  report`` (same SQL, see ``sqlbuild.variant_counts``). Redshift has no table-returning
  functions: there BI tools read ``experiment_results_by_goal`` (same numbers), or run the
  generated query of ``sqlbuild.variant_counts`` as the CLI does (docs/reports.md).

Needs the tables ``events`` and ``identities`` (persons) to exist: call it from
the loader's migrations after creating them.
"""

from __future__ import annotations

from typing import Any

from psycopg2 import sql

from eventpipe.reports import funnel_views, sqlbuild


def statements(
    schema: str, conn: Any, dialect: sqlbuild.DialectArg = sqlbuild.POSTGRES
) -> list[sql.Composable]:
    """The DDL, in order (the function body is rendered with the connection's quoting)."""
    views = [
        ("experiment_exposures", sqlbuild.exposures(schema, dialect=dialect)),
        ("experiment_variant_users", sqlbuild.variant_users_all(schema, dialect)),
        ("experiment_conversions", sqlbuild.conversions_all(schema, dialect)),
        ("experiment_results_by_goal", sqlbuild.results_all(schema, dialect)),
    ]
    out: list[sql.Composable] = [
        sql.SQL("CREATE OR REPLACE VIEW {} AS {}").format(sqlbuild.table(schema, name), body)
        for name, body in views
    ]
    if sqlbuild.dialect_name(dialect) == sqlbuild.REDSHIFT:
        return out
    body = sqlbuild.variant_counts(schema, sql.SQL("p_experiment"), sql.SQL("p_goal")).as_string(conn)
    out.append(
        sql.SQL(
            "CREATE OR REPLACE FUNCTION {}(p_experiment text, p_goal text) "
            "RETURNS TABLE (variant text, users bigint, converters bigint, rate double precision) "
            "LANGUAGE sql STABLE AS {}"
        ).format(sqlbuild.table(schema, "experiment_results"), sql.Literal(body))
    )
    return out + funnel_views.statements(schema, conn)  # Grafana's funnel and retention panels


def ensure_report_views(conn: Any, schema: str, dialect: sqlbuild.DialectArg = sqlbuild.POSTGRES) -> None:
    """Create or replace the report views (and on PostgreSQL the function); idempotent,
    commits. Redshift has no advisory locks: there the loader's migration lock serialises
    callers (``warehouse.migrate``)."""
    with conn, conn.cursor() as cur:
        for statement in sqlbuild.loader_dialect(dialect).report_views_lock():
            cur.execute(statement)
        for statement in statements(schema, conn, dialect):
            cur.execute(statement)
