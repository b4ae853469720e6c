"""Reading the warehouse back in the shapes tests/reference.py computes."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from eventpipe.settings import Settings
from eventpipe.timeutil import format_ts


def query(dsn: str, statement: sql.Composable, params: tuple = ()) -> list[tuple]:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        rows = cur.fetchall()
    conn.close()
    return rows


@contextmanager
def migrated_connection(dsn: str, schema: str) -> Iterator[Any]:
    """A connection to ``schema`` with every loader migration applied (PostgreSQL)."""
    from eventpipe.loader.dialects import get_dialect
    from eventpipe.loader.migrations import migrate

    connection = psycopg2.connect(dsn)
    try:
        migrate(connection, get_dialect("postgres"), schema)
        yield connection
    finally:
        connection.close()


def fresh_example(settings: Settings, schema: str) -> Settings:
    """Settings for one Hypothesis example: an S3 prefix of its own and the schema emptied
    (function-scoped fixtures run once per test, not once per example)."""
    example = settings.model_copy(
        update={"s3_prefix": f"{settings.s3_prefix}{uuid.uuid4().hex[:8]}/", "warehouse_schema": schema}
    )
    with psycopg2.connect(example.warehouse_dsn) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    conn.close()
    return example


def events(dsn: str, schema: str) -> list[dict[str, Any]]:
    """The warehouse's own events, as the event dicts every stage exchanges."""
    rows = query(
        dsn,
        sql.SQL(
            "SELECT message_id, type, event, user_id, anonymous_id, timestamp, received_at, properties "
            "FROM {}.events"
        ).format(sql.Identifier(schema)),
    )
    return [
        {"messageId": m, "type": t, "event": e, "userId": u, "anonymousId": a, "timestamp": format_ts(ts),
         "receivedAt": format_ts(r), "properties": p}
        for m, t, e, u, a, ts, r, p in rows
    ]  # fmt: skip


def aggregates(dsn: str, schema: str) -> dict[str, dict]:
    s = sql.Identifier(schema)
    eng = query(dsn, sql.SQL("SELECT day, event, event_count, user_count FROM {}.engagement_daily").format(s))
    exp = query(
        dsn,
        sql.SQL(
            "SELECT day, experiment_id, variant, event, event_count, user_count FROM {}.experiment_daily"
        ).format(s),
    )
    asg = query(
        dsn,
        sql.SQL(
            "SELECT experiment_id, user_key, variant, first_exposed_at FROM {}.experiment_assignments"
        ).format(s),
    )
    return {
        "engagement_daily": {(d, e): (c, u) for d, e, c, u in eng if c or u},
        "experiment_daily": {(d, x, v, e): (c, u) for d, x, v, e, c, u in exp if c or u},
        "experiment_assignments": {(x, k): (v, format_ts(f)) for x, k, v, f in asg},
    }


def drop_unique_constraints(dsn: str, schema: str, attempts: int = 5) -> int:
    """As on Redshift (constraints informational only): nothing but the loader keeps rows
    unique. Drops every PRIMARY KEY and UNIQUE constraint of ``schema``; returns how many.

    A running loader may hold a lock on one table while waiting for another this ALTER holds:
    PostgreSQL then aborts one side with a deadlock. When it picks this side the whole
    transaction rolled back, so it is simply tried again."""
    for attempt in range(1, attempts + 1):
        try:
            return _drop_unique_constraints_once(dsn, schema)
        except psycopg2.errors.DeadlockDetected:
            if attempt == attempts:
                raise
            time.sleep(0.2 * attempt)
    raise AssertionError("unreachable")


def _drop_unique_constraints_once(dsn: str, schema: str) -> int:
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT table_name, constraint_name FROM information_schema.table_constraints "
                "WHERE table_schema = %s AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')",
                [schema],
            )
            found = cur.fetchall()
            for table, name in found:
                cur.execute(
                    sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                        sql.Identifier(schema, table), sql.Identifier(name)
                    )
                )
    finally:
        conn.close()
    return len(found)


def events_of_users(dsn: str, schema: str, users: list[str]) -> list[dict[str, Any]]:
    """Every stored column an SDK test checks, for the events of ``users`` (by user or anonymous id)."""
    rows = query(
        dsn,
        sql.SQL(
            "SELECT message_id, type, event, name, user_id, anonymous_id, source, timestamp, sent_at, "
            "original_timestamp, properties, traits, context FROM {}.events "
            "WHERE user_id = ANY(%s) OR anonymous_id = ANY(%s)"
        ).format(sql.Identifier(schema)),
        (users, users),
    )
    names = ("messageId", "type", "event", "name", "userId", "anonymousId", "source", "timestamp", "sentAt",
             "originalTimestamp", "properties", "traits", "context")  # fmt: skip
    return [dict(zip(names, row, strict=True)) for row in rows]
