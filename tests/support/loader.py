"""Helpers for the loader's integration tests (no tests here): synthetic batches written
to S3 in the contracts' format, and warehouse read-back."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import psycopg2

from eventpipe.events import normalize
from eventpipe.keys import agg_key, raw_key
from eventpipe.rollup import dedup
from eventpipe.s3 import gzip_json_rows
from eventpipe.settings import Settings
from eventpipe.synthetic import TrafficShape, messages
from tests.support.clock import today_at_noon
from tests.support.warehouse import drop_unique_constraints

# the day the test data lives on: today, so loaders on the real clock list it too
NOW = today_at_noon()


def synthetic_events(seed: int = 3, users: int = 40, now: datetime = NOW) -> list[dict[str, Any]]:
    """Normalised events as ingest stamps them, in receive order, duplicates included
    (a retried duplicate arrives a little later: a later receivedAt)."""
    out, received = [], now
    for n, msg in enumerate(messages(seed=seed, shape=TrafficShape(users=users), now=now)):
        received += timedelta(milliseconds=7 + n % 5)
        out.append(normalize(msg, event_type=None, received_at=received, source="dev"))
    return out


def write_raw(s3: Any, settings: Settings, events: list[dict[str, Any]], per_object: int) -> list[str]:
    """Raw objects as the stream cuts them: one partition, consecutive offsets."""
    keys = []
    for offset in range(0, len(events), per_object):
        chunk = events[offset : offset + per_object]
        key = settings.s3_prefix + raw_key(NOW, 0, offset)
        s3.put_object(Bucket=settings.s3_bucket, Key=key, Body=gzip_json_rows(chunk))
        keys.append(key)
    return keys


def write_agg(s3: Any, settings: Settings, table: str, rows: list[dict[str, Any]], offset: int) -> str:
    key = settings.s3_prefix + agg_key(table, 0, offset, NOW)
    s3.put_object(Bucket=settings.s3_bucket, Key=key, Body=gzip_json_rows(rows))
    return key


def put_bytes(s3: Any, settings: Settings, key: str, body: bytes) -> str:
    s3.put_object(Bucket=settings.s3_bucket, Key=settings.s3_prefix + key, Body=body)
    return settings.s3_prefix + key


def query(settings: Settings, statement: str) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(settings.warehouse_dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f'SET search_path TO "{settings.warehouse_schema}"')
            cur.execute(statement)
            return cur.fetchall()
    finally:
        conn.close()


def expected_events(events: list[dict[str, Any]]) -> dict[str, tuple[str, str, str]]:
    """message_id -> (type, receivedAt, source) of the canonical copy."""
    return {e["messageId"]: (e["type"], e["receivedAt"], e["source"]) for e in dedup(events)}


def loaded_events(settings: Settings) -> dict[str, tuple[str, str, str]]:
    rows = query(
        settings,
        "SELECT message_id, type, to_char(received_at AT TIME ZONE 'UTC', "
        '\'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"\'), source FROM events',
    )
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        counts[row[0]] += 1
    assert max(counts.values(), default=1) == 1, "a message_id was stored twice"
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def drop_primary_keys(settings: Settings) -> None:
    """As on Redshift: no constraint backs uniqueness, only the loader does."""
    drop_unique_constraints(settings.warehouse_dsn, settings.warehouse_schema)
