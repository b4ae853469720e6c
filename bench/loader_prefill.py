"""The loader benchmark's warehouse: a schema of its own whose ``events`` table already
holds ``EVENTPIPE_BENCH_LOADER_PREFILL_ROWS`` rows (default 10M), built once in SQL
(``generate_series``; indexes dropped while filling, then rebuilt with the migrations' own
statements) and reused by later runs, since building it takes minutes.

Keys are md5-shaped UUIDs, as random in the primary key as real messageIds are; what each
run loads carries ``source = 'bench'`` and is deleted (then vacuumed) once it exceeds
``GROWTH_LIMIT`` rows, so the table stays near its prefilled size.
"""

from __future__ import annotations

import os
import time

import psycopg2
from psycopg2 import sql

from eventpipe.bootstrap import build_warehouse
from eventpipe.loader.warehouse import migrate
from eventpipe.settings import Settings

SCHEMA = "bench_loader_prefilled"
GROWTH_LIMIT = 2_000_000  # rows the runs may add before they are deleted again


def prefill_rows() -> int:
    return int(os.environ.get("EVENTPIPE_BENCH_LOADER_PREFILL_ROWS", "10000000"))


def _count(cur, source_is_bench: bool) -> int:
    op = sql.SQL("=") if source_is_bench else sql.SQL("<>")
    cur.execute(sql.SQL("SELECT COUNT(*) FROM {} WHERE source {} 'bench'").format(_events(), op))
    return int(cur.fetchone()[0])


def _events() -> sql.Identifier:
    return sql.Identifier(SCHEMA, "events")


def _fill(cur, dialect, rows: int) -> None:
    indexes = [*dialect.raw_key_indexes(SCHEMA), *dialect.verify_indexes(SCHEMA)]
    names = ["events_raw_key_idx", "events_timestamp_idx", "events_exposure_idx"]
    for name in names:
        cur.execute(sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(SCHEMA, name)))
    cur.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS events_pkey").format(_events()))
    cur.execute(sql.SQL("TRUNCATE {}").format(_events()))
    cur.execute(
        sql.SQL(
            'INSERT INTO {} (message_id, type, event, user_id, source, "timestamp", received_at, '
            "properties, context) SELECT md5(i::text)::uuid::text, 'track', 'Product Viewed', "
            "'u' || (i % 200000), 'prefill', now() - i * interval '25 ms', now() - i * interval '25 ms', "
            "jsonb_build_object('sku', i % 5000, 'price', i % 97), "
            '\'{{"library": {{"name": "prefill"}}}}\' '
            "FROM generate_series(1, {}) AS i"
        ).format(_events(), sql.Literal(rows))
    )
    cur.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY (message_id)").format(_events()))
    for statement in indexes:
        cur.execute(statement)


def prepare(base: Settings) -> tuple[Settings, int]:
    """The settings of the prefilled schema (built when missing or short) and its row count."""
    settings = base.model_copy(update={"warehouse_schema": SCHEMA})
    wh = build_warehouse(settings)
    migrate(wh)
    wanted = prefill_rows()
    conn = wh.conn
    with conn, conn.cursor() as cur:
        prefilled, added = _count(cur, False), _count(cur, True)
    if prefilled != wanted:
        started = time.monotonic()
        print(f"  prefilling {SCHEMA}.events with {wanted:,} rows (once; reused by later runs) …", flush=True)
        with conn, conn.cursor() as cur:
            cur.execute("SET LOCAL maintenance_work_mem = '256MB'")
            _fill(cur, wh.dialect, wanted)
        print(f"  prefilled in {time.monotonic() - started:.0f} s", flush=True)
        prefilled, added = wanted, 0
    if added > GROWTH_LIMIT:
        with conn, conn.cursor() as cur:
            cur.execute(sql.SQL("DELETE FROM {} WHERE source = 'bench'").format(_events()))
        added = 0
    wh.close()
    vacuum(settings)
    return settings, prefilled + added


def vacuum(settings: Settings) -> None:
    conn = psycopg2.connect(settings.warehouse_dsn)
    conn.autocommit = True  # VACUUM runs outside a transaction
    with conn.cursor() as cur:
        cur.execute(sql.SQL("VACUUM (ANALYZE) {}").format(_events()))
    conn.close()


def reset_bookkeeping(settings: Settings) -> None:
    """Forget what a loader run recorded (not the rows: they stay, counted as growth)."""
    conn = psycopg2.connect(settings.warehouse_dsn)
    with conn, conn.cursor() as cur:
        for table in ("load_ledger", "freshness", "loader_state", "identities"):
            cur.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(SCHEMA, table)))
    conn.close()
