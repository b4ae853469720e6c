"""Small loader state kept in the warehouse: the S3 discovery watermark, table counts."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from psycopg2 import sql

from eventpipe.loader.dialects.common import freshness_of
from eventpipe.loader.tables import LOAD_LEDGER, LOADER_STATE, QUARANTINE
from eventpipe.timeutil import utcnow

WATERMARK = "s3_watermark_day"


def get_watermark(conn: Any, schema: str) -> date | None:
    with conn, conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT {} FROM {} WHERE {} = {}").format(
                sql.Identifier("value"), sql.Identifier(schema, LOADER_STATE.name),
                sql.Identifier("name"), sql.Literal(WATERMARK),
            )
        )  # fmt: skip
        row = cur.fetchone()
    return date.fromisoformat(row[0]) if row else None


def save_watermark(conn: Any, dialect: Any, schema: str, day: date) -> tuple[int, int]:
    """Persist the watermark; returns (ledger size, quarantine size) for the gauges."""
    t, name = sql.Identifier(schema, LOADER_STATE.name), sql.Literal(WATERMARK)
    with conn, conn.cursor() as cur:
        cur.execute(dialect.lock(schema, LOADER_STATE.name))  # loaders save concurrently
        cur.execute(sql.SQL("DELETE FROM {} WHERE {} = {}").format(t, sql.Identifier("name"), name))
        cur.execute(
            sql.SQL("INSERT INTO {} ({}, {}, {}) VALUES ({}, {}, {})").format(
                t, sql.Identifier("name"), sql.Identifier("value"), sql.Identifier("updated_at"),
                name, sql.Literal(day.isoformat()), sql.Literal(utcnow()),
            )
        )  # fmt: skip
        counts = []
        for table in (LOAD_LEDGER, QUARANTINE):
            cur.execute(sql.SQL("SELECT COUNT(*) FROM {}").format(sql.Identifier(schema, table.name)))
            counts.append(cur.fetchone()[0])
    return counts[0], counts[1]


def newest_loaded(conn: Any, schema: str) -> datetime | None:
    """The newest ``receivedAt`` loaded into ``events`` (the freshness watermark)."""
    with conn, conn.cursor() as cur:
        cur.execute(freshness_of(schema, "events"))
        row = cur.fetchone()
    return row[0] if row else None
