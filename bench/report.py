"""Benchmark of the experiment report's cost with identity stitching: the same report
(``eventpipe experiments report``'s SQL) counted per person (two joins to the winning links
of ``identities``) and per raw id (no stitching), side by side on the same warehouse.

The warehouse is filled through the loader's own load transaction (so ``identities`` is
derived as in production) with the demo's synthetic traffic (anonymous visitors who later
identify). Bounded: ``EVENTPIPE_BENCH_REPORT_USERS`` (default 20,000 users, about 300k
events) in a schema of its own, dropped afterwards. Best of 3 runs each (a shared machine).
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from psycopg2 import sql

from bench.loader import drop_schemas
from eventpipe.bootstrap import build_warehouse
from eventpipe.events import normalize
from eventpipe.loader.batches import batch_from_rows
from eventpipe.loader.load import load_group
from eventpipe.loader.warehouse import migrate
from eventpipe.reports import sqlbuild
from eventpipe.reports import warehouse as wh
from eventpipe.settings import Settings
from eventpipe.synthetic import TrafficShape, messages

NOW = datetime(2026, 1, 5, 12, tzinfo=UTC)
CHUNK = 20_000
EXPERIMENT, GOAL = "checkout-button", "Order Completed"


def _fill(settings: Settings, users: int) -> int:
    traffic = [
        normalize(m, event_type=None, received_at=NOW, source="bench")
        for m in messages(seed=3, shape=TrafficShape(users=users), now=NOW)
    ]
    return load(settings, traffic)


def load(settings: Settings, traffic: list[dict[str, Any]]) -> int:
    """Migrate the settings' schema and load ``traffic`` (normalised events) through the
    loader's own transaction, ``CHUNK`` events an object; then ``ANALYZE``. Returns the count."""
    store = build_warehouse(settings)
    try:
        migrate(store)
        for start in range(0, len(traffic), CHUNK):
            batch = batch_from_rows(f"bench/report/{start}", "events", traffic[start : start + CHUNK])
            store.run(lambda conn, b=batch: load_group(conn, store.dialect, store.schema, "events", [b]))
        with store.conn, store.conn.cursor() as cur:  # what autovacuum does after a load this size
            for name in ("events", "identities"):
                cur.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(store.schema, name)))
    finally:
        store.close()
    return len(traffic)


def _best_seconds(settings: Settings, key: str, runs: int = 3) -> tuple[float, list[Any]]:
    times, found = [], []
    with wh.connect(settings) as conn:
        for _ in range(runs):
            started = time.perf_counter()
            found = wh.variant_counts(conn, settings.warehouse_schema, EXPERIMENT, GOAL, key)
            times.append(time.perf_counter() - started)
    return min(times), found


def run(users: int | None = None) -> dict[str, Any]:
    n = users or int(os.environ.get("EVENTPIPE_BENCH_REPORT_USERS", "20000"))
    settings = Settings(warehouse_schema=f"bench_report_{uuid.uuid4().hex[:8]}")
    try:
        events = _fill(settings, n)
        persons_s, persons = _best_seconds(settings, sqlbuild.PERSON)
        raw_s, raw = _best_seconds(settings, sqlbuild.RAW)
    finally:
        drop_schemas(settings, [settings.warehouse_schema])
    return {
        "events": events,
        "persons_report_ms": round(persons_s * 1000, 1),
        "raw_ids_report_ms": round(raw_s * 1000, 1),
        "stitching_cost_ratio": round(persons_s / raw_s, 2),
        "persons": sum(c.users for c in persons),
        "raw_ids": sum(c.users for c in raw),
    }


if __name__ == "__main__":
    print(run())
