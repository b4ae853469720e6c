"""Two loaders at once load each batch once -- with primary keys and, as on Redshift,
without them (then only the loader's locking and merges keep rows unique)."""

from __future__ import annotations

import threading

import pytest

from eventpipe.bootstrap import build_loader
from eventpipe.loader.runner import Limits
from tests.support.loader import (
    drop_primary_keys,
    expected_events,
    loaded_events,
    query,
    synthetic_events,
    write_agg,
    write_raw,
)

pytestmark = pytest.mark.integration


TWO_PER_GROUP = Limits(group_objects=2, scan_interval_s=0, deep_scan_interval_s=0)


@pytest.mark.parametrize("constraints", ["with_pk", "without_pk"])
def test_two_loaders_load_each_batch_once(settings, s3, pg_schema, constraints):
    events = synthetic_events(users=30)
    keys = write_raw(s3, settings, events, per_object=60)
    row = {"day": "2026-11-20", "event": "Order Completed", "received_day": "2026-11-20"}
    for n in range(6):
        keys.append(write_agg(s3, settings, "engagement_daily", [dict(row, event_count=1, user_count=1)], n))
        assignment = {"experiment_id": "x", "user_key": f"u{n % 3}", "variant": f"v{n}",
                      "first_exposed_at": f"2026-11-20T10:00:0{9 - n}.000Z"}  # fmt: skip
        keys.append(write_agg(s3, settings, "experiment_assignments", [assignment], n))
    loaders = [build_loader(settings, s3=s3, limits=TWO_PER_GROUP) for _ in range(2)]
    loaders[0].start()
    loaders[1].start()  # a concurrent start-up re-runs no migration
    if constraints == "without_pk":
        drop_primary_keys(settings)
        assert not query(
            settings,
            "SELECT 1 FROM information_schema.table_constraints WHERE constraint_type = 'PRIMARY KEY' "
            f"AND table_schema = '{settings.warehouse_schema}'",
        )
    barrier, loaded, errors = threading.Barrier(2), [0, 0], []

    def run(n: int) -> None:
        try:
            barrier.wait(10)
            loaded[n] = loaders[n].run_once()
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(2)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        assert sum(loaded) == len(keys)
        ledger = query(settings, "SELECT key, COUNT(*) FROM load_ledger GROUP BY key")
        assert sorted(k for k, _ in ledger) == sorted(keys) and {n for _, n in ledger} == {1}
        assert loaded_events(settings) == expected_events(events)  # asserts one row per message_id
        assert query(settings, "SELECT event_count, user_count FROM engagement_daily") == [(6, 6)]
        assert query(settings, "SELECT COUNT(*) FROM engagement_daily_deltas") == [(6,)]
        assigned = query(settings, "SELECT user_key, variant FROM experiment_assignments ORDER BY user_key")
        assert assigned == [("u0", "v3"), ("u1", "v4"), ("u2", "v5")]
    finally:
        for loader in loaders:
            loader.close()
