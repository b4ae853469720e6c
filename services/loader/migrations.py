"""Versioned, idempotent schema migrations, applied at start-up.

``schema_migrations`` records each applied version. Start-ups racing each other take the
same lock, so each migration runs once; every statement is also ``IF NOT EXISTS``-safe,
so a half-applied PostgreSQL migration (impossible: DDL is transactional there) or a
Redshift one replays cleanly. Add a migration by appending to ``MIGRATIONS``; never edit
one that has shipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from eventpipe.loader.dialects import Dialect, Statement, checks, models
from eventpipe.loader.dialects.bookkeeping import applied_migrations, create_schema, record_migration
from eventpipe.loader.dialects.common import create_table
from eventpipe.loader.dialects.links import backfill_identities
from eventpipe.loader.tables import (
    DAY_STATUS,
    DAY_WATERMARK,
    ENGAGEMENT_DAILY,
    ENGAGEMENT_DELTAS,
    EVENTS,
    EXPERIMENT_ASSIGNMENTS,
    EXPERIMENT_DAILY,
    EXPERIMENT_DELTAS,
    FINAL_BATCHES,
    FRESHNESS,
    IDENTITIES,
    LOAD_LEDGER,
    LOADER_STATE,
    QUARANTINE,
    SCHEMA_MIGRATIONS,
    TRACKING_PLAN_VIOLATIONS,
    Table,
)

log = logging.getLogger(__name__)
Migration = tuple[int, str, Callable[[Any, str], list[Statement]]]
# ``events`` as migration 1 shipped it: columns added later come from their own migration
# (Redshift has no ADD COLUMN IF NOT EXISTS, so a fresh warehouse must not have them yet)
_EVENTS_V1 = Table(
    EVENTS.name, tuple(c for c in EVENTS.columns if c != TRACKING_PLAN_VIOLATIONS), EVENTS.primary_key
)


def _v1(dialect: Dialect, schema: str) -> list[Statement]:
    tables = (_EVENTS_V1, ENGAGEMENT_DAILY, EXPERIMENT_DAILY, EXPERIMENT_ASSIGNMENTS, ENGAGEMENT_DELTAS,
              EXPERIMENT_DELTAS, LOAD_LEDGER, DAY_STATUS, FRESHNESS, LOADER_STATE, QUARANTINE)  # fmt: skip
    return [create_table(dialect, schema, t) for t in tables] + dialect.indexes(schema)


def _v2(dialect: Dialect, schema: str) -> list[Statement]:
    return [
        create_table(dialect, schema, IDENTITIES),
        *dialect.identity_indexes(schema),
        backfill_identities(schema),
    ]


def _v3(dialect: Dialect, schema: str) -> list[Statement]:
    tables = [create_table(dialect, schema, t) for t in (FINAL_BATCHES, DAY_WATERMARK)]
    return tables + dialect.verify_indexes(schema)


def _v4(dialect: Dialect, schema: str) -> list[Statement]:
    return dialect.raw_key_indexes(schema)


def _v5(dialect: Dialect, schema: str) -> list[Statement]:
    return [dialect.add_column(schema, EVENTS, TRACKING_PLAN_VIOLATIONS)]


def _v6(dialect: Dialect, schema: str) -> list[Statement]:
    return checks.statements(schema)


def _v7(dialect: Dialect, schema: str) -> list[Statement]:
    return list(models.statements(dialect, schema))


MIGRATIONS: list[Migration] = [
    (1, "contract tables, deltas, ledger, day status, freshness, quarantine", _v1),
    (2, "identities: identity links of identify/alias events (persons)", _v2),
    (3, "final days record the batches they contain; late deltas touch them; verify indexes", _v3),
    (4, "index the raw user key: a late link touches the final days of its id", _v4),
    (5, "events.tracking_plan_violations: the errors of events a tracking plan flagged", _v5),
    (6, "data tests: check_results, and the view check_volume_by_weekday", _v6),
    (7, "funnel and retention building blocks: views persons, funnel_step_events, retention_cohorts", _v7),
]


def bootstrap_statements(dialect: Dialect, schema: str) -> list[Statement]:
    return [
        create_schema(schema),
        create_table(dialect, schema, SCHEMA_MIGRATIONS),
    ]


def migrate(conn: Any, dialect: Dialect, schema: str) -> list[int]:
    """Bring ``schema`` up to the newest version; returns the versions applied now."""
    with conn, conn.cursor() as cur:
        for statement in bootstrap_statements(dialect, schema):
            cur.execute(statement)
    applied_now = []
    with conn, conn.cursor() as cur:
        cur.execute(dialect.lock(schema, SCHEMA_MIGRATIONS.name))
        cur.execute(applied_migrations(schema))
        done = {row[0] for row in cur.fetchall()}
        for version, name, build in MIGRATIONS:
            if version in done:
                continue
            for statement in build(dialect, schema):
                cur.execute(statement)
            cur.execute(record_migration(schema, version, name))
            applied_now.append(version)
            log.info("migration applied", extra={"schema": schema, "version": version})
    return applied_now
