"""The data tests' warehouse objects (docs/checks.md), in SQL that PostgreSQL and Redshift
both run: created by migration 6.

- ``check_results``: one row per check and run of ``eventpipe checks run`` (the loader runs
  it after each nightly reprocess), so a failure stays visible after the run;
- view ``check_volume_by_weekday``: per day and engagement event, the event count against
  the mean of the same weekday in the previous four weeks (the days that have a row), and
  ``change = count / baseline - 1`` (NULL without a baseline). The volume-regression checks
  read it in one line.
"""

from __future__ import annotations

from psycopg2 import sql

CHECK_RESULTS, VOLUME_VIEW = "check_results", "check_volume_by_weekday"
BASELINE_WEEKS = 4


def check_results_table(schema: str) -> sql.Composed:
    return sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (run_at timestamptz NOT NULL, day date NOT NULL, "
        "dataset varchar(256) NOT NULL, check_name varchar(1024) NOT NULL, outcome varchar(16) NOT NULL, "
        "value double precision, PRIMARY KEY (run_at, dataset, check_name))"
    ).format(sql.Identifier(schema, CHECK_RESULTS))


def insert_result(schema: str) -> sql.Composed:
    """One row of ``check_results``; parameters: run_at, day, dataset, check_name, outcome, value."""
    return sql.SQL(
        "INSERT INTO {} (run_at, day, dataset, check_name, outcome, value) VALUES (%s, %s, %s, %s, %s, %s)"
    ).format(sql.Identifier(schema, CHECK_RESULTS))


def volume_view(schema: str) -> sql.Composed:
    """Date minus date is an integer of days on both dialects; ``CREATE OR REPLACE VIEW``
    keeps the migration replayable."""
    weeks = sql.SQL(", ").join(sql.Literal(7 * k) for k in range(1, BASELINE_WEEKS + 1))
    return sql.SQL(
        "CREATE OR REPLACE VIEW {view} AS SELECT d.day, d.event, d.event_count, "
        "count(p.day) AS baseline_days, avg({past}) AS baseline, "
        "CASE WHEN avg({past}) > 0 THEN CAST(d.event_count AS double precision) / avg({past}) - 1 END "
        "AS change FROM {daily} d LEFT JOIN {daily} p ON p.event = d.event AND (d.day - p.day) IN ({weeks}) "
        "GROUP BY d.day, d.event, d.event_count"
    ).format(
        view=sql.Identifier(schema, VOLUME_VIEW),
        daily=sql.Identifier(schema, "engagement_daily"),
        weeks=weeks,
        past=sql.SQL("CAST(p.event_count AS double precision)"),
    )


def statements(schema: str) -> list[sql.Composed]:
    return [check_results_table(schema), volume_view(schema)]
