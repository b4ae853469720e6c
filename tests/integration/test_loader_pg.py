"""Loader against real PostgreSQL and the S3 API server: content, replays, merges."""

from __future__ import annotations

import gzip
from datetime import date, timedelta

import orjson
import psycopg2
import pytest

from eventpipe.bootstrap import build_loader
from eventpipe.loader.batches import batch_from_rows
from eventpipe.loader.dialects import get_dialect
from eventpipe.loader.migrations import migrate
from eventpipe.loader.runner import Limits
from eventpipe.loader.warehouse import replace_day
from eventpipe.timeutil import format_ts, parse_ts
from tests.support.clock import ManualClock
from tests.support.loader import (
    NOW,
    expected_events,
    loaded_events,
    put_bytes,
    query,
    synthetic_events,
    write_agg,
    write_raw,
)

pytestmark = pytest.mark.integration
SNAPSHOT = (
    "SELECT * FROM events ORDER BY message_id",
    "SELECT * FROM engagement_daily ORDER BY day, event",
    "SELECT * FROM experiment_assignments ORDER BY experiment_id, user_key",
    "SELECT key, table_name, rows FROM load_ledger ORDER BY key",
)


def make_loader(settings, s3, clock=None, limits=None, **kw):
    limits = limits or Limits(group_objects=3, scan_interval_s=0, deep_scan_interval_s=0)
    loader = build_loader(settings, s3=s3, limits=limits, clock=clock or ManualClock(NOW), **kw)
    loader.start()
    return loader


def day(offset: int) -> date:
    """The test data's day (NOW's) shifted by ``offset`` days."""
    return (NOW + timedelta(days=offset)).date()


def raw_object_key(at: date, hour: int, partition: int, offset: int = 0) -> str:
    return f"raw/events/dt={at}/hr={hour:02}/events+{partition}+{offset:019}.jsonl.gz"


def snapshot(settings):
    return [query(settings, q) for q in SNAPSHOT]


def test_raw_batches_load_their_content_once(settings, s3, pg_schema):
    events = synthetic_events()
    assert len({e["messageId"] for e in events}) < len(events)  # duplicates included
    keys = write_raw(s3, settings, events, per_object=300)
    loader = make_loader(settings, s3)
    try:
        assert loader.run_once() == len(keys)
        assert loaded_events(settings) == expected_events(events)
        ledger = query(settings, "SELECT key, rows FROM load_ledger ORDER BY key")
        assert [k for k, _ in ledger] == sorted(keys) and sum(r for _, r in ledger) == len(events)
        props = query(settings, "SELECT properties, context FROM events WHERE type = 'track' LIMIT 1")[0]
        assert isinstance(props[0], dict) and isinstance(props[1], dict)
        before = snapshot(settings)
        assert loader.run_once() == 0  # a new round finds everything in the ledger
        second = make_loader(settings, s3)  # a fresh loader (restart) changes nothing either
        assert second.run_once() == 0
        second.close()
        assert snapshot(settings) == before
        freshness = query(settings, "SELECT newest_received_at FROM freshness WHERE table_name = 'events'")
        assert format_ts(freshness[0][0]) == max(e["receivedAt"] for e in events)
    finally:
        loader.close()


def test_earlier_copy_replaces_a_later_one(settings, s3, pg_schema):
    late = synthetic_events(users=2)[0]
    early = dict(late, receivedAt=f"{day(0)}T11:00:00.000Z", source="early")
    loader = make_loader(settings, s3)
    try:
        write_raw(s3, settings, [late], per_object=1)
        loader.run_once()
        key = put_bytes(s3, settings, raw_object_key(day(0), 11, 1), gzip.compress(orjson.dumps(early)))
        assert key
        loader.run_once()
        assert loaded_events(settings) == {late["messageId"]: (late["type"], early["receivedAt"], "early")}
    finally:
        loader.close()


def test_an_old_day_written_late_is_found_by_the_deep_scan(settings, s3, pg_schema):
    """A stream catching up writes an object for a day far behind the listing watermark:
    the regular scan (watermark - 1 .. today + 1) cannot see it, the next deep scan does."""
    clock = ManualClock(NOW)
    limits = Limits(scan_interval_s=0, deep_scan_interval_s=900, deep_scan_days=8)
    loader = make_loader(settings, s3, clock=clock, limits=limits)
    events = synthetic_events(users=3)
    try:
        write_raw(s3, settings, events, per_object=100)
        loader.run_once()  # no watermark yet: the whole tree
        loader.run_once()  # the first deep scan since start
        old = dict(events[0], messageId="written-late", receivedAt=f"{day(-5)}T10:00:00.000Z")
        put_bytes(s3, settings, raw_object_key(day(-5), 10, 2), gzip.compress(orjson.dumps(old)))
        assert loader.run_once() == 0  # regular scans start the day before today
        clock.advance(limits.deep_scan_interval_s - 1)
        assert loader.run_once() == 0
        clock.advance(1)
        assert loader.run_once() == 1
        assert loaded_events(settings)["written-late"] == (old["type"], old["receivedAt"], old["source"])
    finally:
        loader.close()


def test_aggregate_deltas_add_up_and_final_days_are_respected(settings, s3, pg_schema):
    """A final day contains exactly the batches its job listed (issue 11): every other delta
    of that day is added, whenever it was received, and touches the day."""
    yesterday, today, tomorrow = day(-1), day(0), day(1)
    row = {"day": str(yesterday), "event": "Signed Up", "event_count": 3, "user_count": 2}
    loader = make_loader(settings, s3)
    try:
        first = write_agg(s3, settings, "engagement_daily", [dict(row, received_day=str(yesterday))], 0)
        second = write_agg(s3, settings, "engagement_daily", [dict(row, received_day=str(today))], 10)
        loader.run_once()
        assert query(settings, "SELECT event_count, user_count, is_final FROM engagement_daily") == [
            (6, 4, False)
        ]
        # the nightly job makes the day final (cutoff today); it listed a third cut whose
        # aggregate batch the loader has not loaded yet
        listed_not_loaded = write_agg(
            s3, settings, "engagement_daily", [dict(row, received_day=str(today))], 40
        )
        contained = [first, second, listed_not_loaded]
        final = batch_from_rows(
            "corrections", "engagement_daily:final", [dict(row, event_count=5, user_count=3)]
        )
        replace = lambda: loader.wh.run(  # noqa: E731
            lambda c: replace_day(c, loader.wh.dialect, settings.warehouse_schema, yesterday, today,
                                  {"engagement_daily": final}, contained)
        )  # fmt: skip
        replace()
        assert query(settings, "SELECT event_count, user_count, is_final FROM engagement_daily") == [
            (5, 3, True)
        ]
        # deltas the job did not list are added, received inside the cutoff (20: the bug of
        # issue 11, once dropped) or after it (30); the listed one (40) is already inside
        write_agg(s3, settings, "engagement_daily", [dict(row, received_day=str(today))], 20)
        write_agg(s3, settings, "engagement_daily", [dict(row, received_day=str(tomorrow))], 30)
        loader.run_once()
        assert query(settings, "SELECT event_count, user_count, is_final FROM engagement_daily") == [
            (11, 7, True)
        ]
        assert query(settings, "SELECT COUNT(*) FROM engagement_daily_deltas") == [(5,)]
        touched = "SELECT touched_at IS NOT NULL, touched_received_day FROM day_watermark"
        assert query(settings, touched) == [(True, tomorrow)]
        # replacing the day again keeps the deltas it does not contain, and clears the touch
        replace()
        assert query(settings, "SELECT event_count, user_count FROM engagement_daily") == [(11, 7)]
        assert query(settings, "SELECT is_final, cutoff_day FROM day_status") == [(True, today)]
        assert query(settings, touched) == [(False, None)]
    finally:
        loader.close()


def test_experiment_rows_and_earliest_assignment(settings, s3, pg_schema):
    yesterday = str(day(-1))
    exp = {"day": yesterday, "experiment_id": "x", "variant": "a", "event": "Order Completed",
           "received_day": yesterday, "event_count": 2, "user_count": 1}  # fmt: skip
    a = {
        "experiment_id": "x",
        "user_key": "u1",
        "variant": "b",
        "first_exposed_at": f"{yesterday}T10:00:00.000Z",
    }
    earlier = dict(a, variant="a", first_exposed_at=f"{yesterday}T09:00:00.000Z")
    loader = make_loader(settings, s3)
    try:
        write_agg(s3, settings, "experiment_daily", [exp, dict(exp, variant="b")], 0)
        write_agg(s3, settings, "experiment_assignments", [a], 0)
        loader.run_once()
        write_agg(s3, settings, "experiment_daily", [exp], 5)
        write_agg(s3, settings, "experiment_assignments", [earlier, dict(a, user_key="u2")], 5)
        write_agg(s3, settings, "experiment_assignments", [dict(a, variant="c", first_exposed_at=format_ts(
            parse_ts(a["first_exposed_at"])))], 9)  # fmt: skip
        loader.run_once()
        assert query(settings, "SELECT variant, event_count FROM experiment_daily ORDER BY variant") == [
            ("a", 4), ("b", 2)
        ]  # fmt: skip
        rows = query(settings, "SELECT user_key, variant FROM experiment_assignments ORDER BY user_key")
        assert rows == [("u1", "a"), ("u2", "b")]
    finally:
        loader.close()


def test_corrupt_objects_are_quarantined_and_the_rest_loads(settings, s3, pg_schema):
    events = synthetic_events(users=5)
    good = write_raw(s3, settings, events, per_object=50)
    today = day(0)
    agg = f"agg/engagement_daily/dt={today}/engagement_daily+5+0000000000000000000.jsonl.gz"
    bad_time = orjson.dumps(dict(events[0], messageId="zz", timestamp=f"{today:%Y}-13-45T00:00"))
    bad_row = orjson.dumps({"day": str(today), "event": "x"}) + b"\n"
    unfinished = b'{"messageId": "m1"\n'
    bad = {
        "bad_gzip": put_bytes(s3, settings, raw_object_key(today, 12, 3), b"not gzip at all"),
        "bad_shape": put_bytes(s3, settings, agg, gzip.compress(bad_row)),
        "bad_value": put_bytes(s3, settings, raw_object_key(today, 12, 6), gzip.compress(bad_time)),
        "bad_json": put_bytes(s3, settings, raw_object_key(today, 12, 4), gzip.compress(unfinished)),
    }
    loader = make_loader(settings, s3)
    try:
        loader.run_once()
        assert loaded_events(settings) == expected_events(events)
        quarantined = dict(query(settings, "SELECT reason, key FROM quarantine"))
        assert quarantined == bad
        assert len(query(settings, "SELECT key FROM load_ledger")) == len(good)
        assert loader.metrics.quarantined.labels("bad_gzip")._value.get() == 1
        assert loader.run_once() == 0 and not loader.pending  # quarantined objects are not retried
    finally:
        loader.close()


def test_migration_5_adds_the_violations_column_to_a_warehouse_created_before_it(settings, pg_schema):
    postgres = get_dialect("postgres")
    conn = psycopg2.connect(settings.warehouse_dsn)
    try:
        migrate(conn, postgres, pg_schema)
        with conn, conn.cursor() as cur:  # the warehouse as migrations 1-4 left it
            cur.execute(f'ALTER TABLE "{pg_schema}".events DROP COLUMN tracking_plan_violations')
            cur.execute(f'DELETE FROM "{pg_schema}".schema_migrations WHERE version = 5')
        assert migrate(conn, postgres, pg_schema) == [5]
        assert migrate(conn, postgres, pg_schema) == []
    finally:
        conn.close()
    column = query(
        settings,
        "SELECT is_nullable, data_type FROM information_schema.columns "
        f"WHERE table_schema = '{pg_schema}' AND column_name = 'tracking_plan_violations'",
    )
    assert column == [("YES", "jsonb")]


def test_an_empty_object_stays_pending_until_it_is_written(settings, s3, pg_schema):
    """s3rver keeps the empty file of a PUT torn before its body; the stream writes the
    object again. Loading it empty would put the key in the ledger and skip the real one."""
    event = synthetic_events(users=2)[0]
    key = raw_object_key(day(0), 12, 2)
    put_bytes(s3, settings, key, b"")
    loader = make_loader(settings, s3)
    try:
        assert loader.run_once() == 0
        assert query(settings, "SELECT COUNT(*) FROM load_ledger") == [(0,)]
        assert query(settings, "SELECT COUNT(*) FROM quarantine") == [(0,)]
        put_bytes(s3, settings, key, gzip.compress(orjson.dumps(event)))
        assert loader.run_once() == 1
        assert loaded_events(settings) == expected_events([event])
    finally:
        loader.close()
