"""Loader benchmark: rows/s from S3 raw batches into PostgreSQL through the whole load
path (S3 GET, gunzip, COPY to a stage, dedup, merge, ledger, commit), side by side in the
same run with a raw ``COPY FROM STDIN`` of the same rows, already decoded and in memory
(the ceiling), both into the same ``events`` table already holding
``EVENTPIPE_BENCH_LOADER_PREFILL_ROWS`` rows (default 10M: ``loader_prefill``, built once).

Bounded: 200k events in 20 objects per run, fresh messageIds each run (random UUIDs, as
real ones), an S3 prefix of its own removed after; two runs of each, alternated, best kept.
"""

from __future__ import annotations

import csv
import io
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
from psycopg2 import sql

from bench.loader_prefill import prepare, reset_bookkeeping
from eventpipe.bootstrap import build_loader, build_warehouse
from eventpipe.events import normalize
from eventpipe.keys import raw_key
from eventpipe.loader.runner import Limits
from eventpipe.loader.tables import EVENTS, JSON
from eventpipe.s3 import gzip_json_rows, s3_client
from eventpipe.settings import Settings
from eventpipe.synthetic import TrafficShape, messages

EVENTS_WANTED = 200_000
OBJECTS = 20


def _events(now: datetime) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    received, seed = now, 11
    while len(out) < EVENTS_WANTED:  # synthetic traffic, no duplicates: the same rows for both
        for msg in messages(seed=seed, shape=TrafficShape(users=1000, duplicate_rate=0.0), now=now):
            received += timedelta(microseconds=500)
            out.append(normalize(msg, event_type=None, received_at=received, source="bench"))
        seed += 1
    return out[:EVENTS_WANTED]


def _with_fresh_ids(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [dict(e, messageId=str(uuid.uuid4())) for e in events]


def _csv_rows(events: list[dict[str, Any]]) -> bytes:
    """The ceiling's input: the same rows as typed CSV, rendered before the clock starts."""
    import orjson

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for e in events:
        writer.writerow(
            [
                (orjson.dumps(e[c.key]).decode() if e.get(c.key) is not None else None)
                if c.kind == JSON
                else e.get(c.key)
                for c in EVENTS.columns
            ]
        )
    return buffer.getvalue().encode()


def drop_schemas(settings: Settings, schemas: list[str]) -> None:
    """Drop the benchmark's own schemas (the loader and report benchmarks)."""
    conn = psycopg2.connect(settings.warehouse_dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        for schema in schemas:
            cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    conn.close()


def _loader_seconds(settings: Settings, s3: Any) -> float:
    loader = build_loader(settings, s3=s3, limits=Limits(group_objects=OBJECTS, scan_interval_s=0))
    loader.start()
    started = time.perf_counter()
    loaded = loader.run_once()
    seconds = time.perf_counter() - started
    loader.close()
    assert loaded == OBJECTS, f"loaded {loaded} of {OBJECTS} objects"
    return seconds


def _copy_seconds(settings: Settings, payload: bytes) -> float:
    ceiling = build_warehouse(settings)
    copy = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(
        sql.Identifier(ceiling.schema, "events"), sql.SQL(", ").join(map(sql.Identifier, EVENTS.column_names))
    )
    conn = ceiling.conn
    started = time.perf_counter()
    with conn, conn.cursor() as cur:
        cur.copy_expert(copy, io.BytesIO(payload), size=1 << 20)
    seconds = time.perf_counter() - started
    ceiling.close()
    return seconds


def _put_objects(s3: Any, base: Settings, now: datetime, events: list[dict[str, Any]], run: int) -> list[str]:
    per_object = len(events) // OBJECTS
    keys = []
    for n in range(OBJECTS):
        key = base.s3_prefix + raw_key(now, n % 6, (run * OBJECTS + n) * per_object)
        body = gzip_json_rows(events[n * per_object : (n + 1) * per_object])
        s3.put_object(Bucket=base.s3_bucket, Key=key, Body=body)
        keys.append(key)
    return keys


def _delete(s3: Any, base: Settings, keys: list[str]) -> None:
    for key in keys:
        s3.delete_object(Bucket=base.s3_bucket, Key=key)


def run(repeats: int = 2) -> dict[str, float]:
    """Alternates loader and ceiling runs into the prefilled table and keeps the best of
    each: the machine is shared, so a single run mostly measures the neighbours."""
    tag = uuid.uuid4().hex[:8]
    base = Settings(s3_prefix=f"bench/loader-{tag}/")
    s3 = s3_client(base)
    settings, prefilled = prepare(base)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    template = _events(now)
    rows = (len(template) // OBJECTS) * OBJECTS
    keys: list[str] = []
    loader_s, copy_s = [], []
    try:
        for n in range(repeats):
            for kind in ("loader", "copy"):
                events = _with_fresh_ids(template[:rows])
                if kind == "loader":
                    reset_bookkeeping(settings)
                    keys = _put_objects(s3, base, now, events, n)
                    loader_s.append(_loader_seconds(settings, s3))
                    _delete(s3, base, keys)  # the next run's loader lists only its own
                else:
                    copy_s.append(_copy_seconds(settings, _csv_rows(events)))
    finally:
        reset_bookkeeping(settings)
        _delete(s3, base, keys)
    best_loader, best_copy = min(loader_s), min(copy_s)
    return {
        "rows_per_s": round(rows / best_loader, 1),
        "copy_ceiling_rows_per_s": round(rows / best_copy, 1),
        "prefilled_rows": prefilled,
        "rows": rows,
        "objects": OBJECTS,
        "ratio_to_ceiling": round(best_copy / best_loader, 3),
        "loader_runs_s": [round(x, 2) for x in loader_s],
        "copy_runs_s": [round(x, 2) for x in copy_s],
    }


if __name__ == "__main__":
    print(run())
