"""The loader's safety-net listing starts at each slot's mark (S3 ``StartAfter``), and its
bookkeeping is pruned past the retention (docs/loader.md, "Discovery", "Retention")."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from eventpipe.bootstrap import build_loader
from eventpipe.keys import raw_key
from eventpipe.loader.runner import Limits
from eventpipe.s3 import gzip_json_rows
from eventpipe.timeutil import utcnow
from tests.support.loader import NOW, query, synthetic_events, write_agg, write_raw

pytestmark = pytest.mark.integration

EVERY_ROUND = Limits(scan_interval_s=0, deep_scan_interval_s=math.inf, listing_settle_s=0)


def listed(loader) -> float:
    return loader.metrics.registry.get_sample_value("eventpipe_loader_listed_objects_total")


def test_a_scan_after_everything_is_loaded_lists_only_new_objects(settings, s3, pg_schema):
    events = synthetic_events(users=10)
    keys = write_raw(s3, settings, events, per_object=40)
    row = {"day": NOW.date().isoformat(), "event": "*", "received_day": NOW.date().isoformat()}
    keys += [
        write_agg(s3, settings, "engagement_daily", [dict(row, event_count=1, user_count=1)], n)
        for n in range(3)
    ]
    loader = build_loader(settings, s3=s3, limits=EVERY_ROUND)
    try:
        loader.start()
        assert loader.run_once() == len(keys)
        assert listed(loader) == len(keys)  # the first listing is in full
        assert loader.run_once() == 0
        assert listed(loader) == len(keys)  # every slot listed from its mark: nothing returned
        more = events[:5]
        late = settings.s3_prefix + raw_key(NOW, 0, len(events) + 1000)  # the same slot, a later offset
        s3.put_object(Bucket=settings.s3_bucket, Key=late, Body=gzip_json_rows(more))
        agg = write_agg(s3, settings, "engagement_daily", [dict(row, event_count=1, user_count=1)], 99)
        assert loader.run_once() == 2
        assert listed(loader) == len(keys) + 2
        ledger = query(settings, "SELECT key FROM load_ledger")
        assert sorted(k for (k,) in ledger) == sorted([*keys, late, agg])
        assert query(settings, "SELECT event_count FROM engagement_daily") == [(4,)]
    finally:
        loader.close()


def test_bookkeeping_past_the_retention_is_pruned_and_the_rest_kept(settings, s3, pg_schema):
    loader = build_loader(settings, s3=s3, limits=EVERY_ROUND)
    try:
        loader.start()
        now, days = utcnow(), settings.loader_retention_days
        old_at, new_at = now - timedelta(days=days + 1), now - timedelta(days=days - 1)
        old_day, new_day = old_at.date(), now.date()
        query_all = [
            f"INSERT INTO load_ledger VALUES ('old', 'events', 1, '{old_at.isoformat()}'),"
            f" ('new', 'events', 1, '{new_at.isoformat()}')",
            # deltas: pruned only when both the day and the load are past the retention; a late
            # delta of an old day stays (the nightly adds it again when it recomputes the day)
            "INSERT INTO engagement_daily_deltas (batch_key, day, event, received_day, event_count,"
            f" user_count, loaded_at) VALUES ('gone', '{old_day}', '*', '{old_day}', 1, 1,"
            f" '{old_at.isoformat()}'),"
            f" ('late', '{old_day}', '*', '{new_day}', 1, 1, '{new_at.isoformat()}'),"
            f" ('fresh', '{new_day}', '*', '{new_day}', 1, 1, '{new_at.isoformat()}')",
            f"INSERT INTO final_batches VALUES ('{old_day}', 'gone'), ('{new_day}', 'kept')",
        ]
        for statement in query_all:
            query(settings, statement + " RETURNING 1")
        loader.run_once()
        assert query(settings, "SELECT key FROM load_ledger") == [("new",)]
        kept = query(settings, "SELECT batch_key FROM engagement_daily_deltas ORDER BY batch_key")
        assert kept == [("fresh",), ("late",)]
        assert query(settings, "SELECT batch_key FROM final_batches") == [("kept",)]
        pruned = loader.metrics.registry.get_sample_value
        assert pruned("eventpipe_loader_pruned_rows_total", {"table": "load_ledger"}) == 1
        assert pruned("eventpipe_loader_pruned_rows_total", {"table": "engagement_daily_deltas"}) == 1
        assert pruned("eventpipe_loader_pruned_rows_total", {"table": "final_batches"}) == 1
    finally:
        loader.close()
