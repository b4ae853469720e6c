"""Small loader state kept in the warehouse: the S3 discovery watermark, table counts.
The statements are the dialects' (``dialects.bookkeeping``); this runs them on a connection."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from eventpipe.loader.dialects import Dialect
from eventpipe.loader.dialects.bookkeeping import prune, row_count, watermark_replace, watermark_select
from eventpipe.loader.dialects.common import freshness_of
from eventpipe.loader.tables import LOAD_LEDGER, LOADER_STATE, QUARANTINE
from eventpipe.timeutil import utcnow


def get_watermark(conn: Any, schema: str) -> date | None:
    with conn, conn.cursor() as cur:
        cur.execute(watermark_select(schema))
        row = cur.fetchone()
    return date.fromisoformat(row[0]) if row else None


def save_watermark(conn: Any, dialect: Dialect, schema: str, day: date) -> tuple[int, int]:
    """Persist the watermark; returns (ledger size, quarantine size) for the gauges."""
    with conn, conn.cursor() as cur:
        cur.execute(dialect.lock(schema, LOADER_STATE.name))  # loaders save concurrently
        for statement in watermark_replace(schema, day, utcnow()):
            cur.execute(statement)
        counts = []
        for table in (LOAD_LEDGER, QUARANTINE):
            cur.execute(row_count(schema, table))
            counts.append(cur.fetchone()[0])
    return counts[0], counts[1]


def newest_loaded(conn: Any, schema: str) -> datetime | None:
    """The newest ``receivedAt`` loaded into ``events`` (the freshness watermark)."""
    with conn, conn.cursor() as cur:
        cur.execute(freshness_of(schema, "events"))
        row = cur.fetchone()
    return row[0] if row else None


def prune_bookkeeping(conn: Any, schema: str, now: datetime, retention_days: int) -> dict[str, int]:
    """Delete the bookkeeping past the retention (``bookkeeping.prune``), one transaction per
    table so a load waits for none of them long; returns the rows deleted per table."""
    cutoff = now - timedelta(days=retention_days)
    deleted = {}
    for table, statement in prune(schema, cutoff, cutoff.date()):
        with conn, conn.cursor() as cur:
            cur.execute(statement)
            deleted[table] = max(cur.rowcount, 0)
    return deleted
