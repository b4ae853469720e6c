"""Cut policy (fake clock) and a partition batch's objects: deterministic cuts, the time
bound, replays that cut at a recorded last offset, rejected records."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta

import orjson

from eventpipe.stream.batch import PartitionBatch
from eventpipe.stream.cuts import CutPolicy
from tests.support.batches import event, fill
from tests.support.clock import ManualClock

T0 = datetime(2026, 11, 26, 9, 59, 58, tzinfo=UTC)


def policy(clock: ManualClock, max_events: int = 3, max_bytes: int = 1000) -> CutPolicy:
    return CutPolicy(max_events=max_events, max_bytes=max_bytes, max_age_s=10, clock=clock)


def test_count_bytes_and_hour_cuts() -> None:
    p = policy(ManualClock())
    assert [p.before(o, "2026-11-26T10", 10) or p.add(o, "2026-11-26T10", 10) for o in range(3)] == [
        None,
        None,
        "count",
    ]
    p.reset()
    p.add(3, "2026-11-26T10", 600)
    assert p.before(4, "2026-11-26T10", 500) == "bytes"
    assert p.before(4, "2026-11-26T11", 10) == "hour"
    assert p.before(4, None, 0) is None  # a rejected record never forces a cut


def test_time_bound_uses_the_clock_and_is_ignored_while_replaying() -> None:
    clock = ManualClock()
    p = policy(clock)
    assert not p.expired()
    p.add(7, "2026-11-26T10", 10)
    clock.advance(9.9)
    assert not p.expired()
    clock.advance(0.1)
    assert p.expired()
    p.force(9)  # an object of this cut exists: cut exactly where it ended
    assert not p.expired()
    assert p.add(8, "2026-11-26T10", 10) is None
    assert p.before(9, "2026-11-26T11", 10) is None  # even across the hour: the record decides
    assert p.add(9, "2026-11-26T11", 10) == "replay"


def test_a_replayed_cut_rewrites_the_same_objects() -> None:
    values = [event(n, T0 + timedelta(seconds=n / 10)) for n in range(5)]
    first_run = PartitionBatch(2, policy(ManualClock(), max_events=100))
    fill(first_run, values[:4])  # ...then the flush interval ran out
    written = {o.key: o for o in first_run.objects(False, T0)}
    raw = next(o for o in written.values() if o.table == "events")
    assert raw.key == "raw/events/dt=2026-11-26/hr=09/events+2+0000000000000000000.jsonl.gz"
    assert raw.metadata["last-offset"] == "3" and raw.metadata["count"] == "4"
    assert gzip.decompress(raw.body).splitlines() == values[:4]  # the Kafka values, unchanged

    replay = PartitionBatch(2, policy(ManualClock(), max_events=100))
    replay.policy.force(int(raw.metadata["last-offset"]))
    assert fill(replay, values[:4]) == [None, None, None, "replay"]
    again = {o.key: o for o in replay.objects(False, T0)}
    assert {k: (o.body, o.metadata) for k, o in again.items()} == {
        k: (o.body, o.metadata) for k, o in written.items()
    }
    assert sorted(o.table for o in again.values()) == ["engagement_daily", "events"]


def test_bad_records_go_to_rejected_and_do_not_stop_the_batch() -> None:
    batch = PartitionBatch(0, policy(ManualClock(), max_events=100))
    bad = [b"not json", b"[1]", orjson.dumps({"type": "page"}), None]
    reasons = fill(batch, [bad[0], event(1, T0), bad[1], bad[2]], first_offset=10)
    assert reasons == [None, None, None, None]
    objects = {o.table: o for o in batch.objects(False, T0)}
    assert objects["events"].key.endswith("events+0+0000000000000000011.jsonl.gz")
    assert objects["events"].metadata["last-offset"] == "13"
    rejected = [orjson.loads(line) for line in gzip.decompress(objects["rejected"].body).splitlines()]
    assert [(r["offset"], r["reason"]) for r in rejected] == [
        (10, "invalid_json"),
        (12, "invalid_event"),
        (13, "missing_field"),
    ]
    assert objects["rejected"].key.startswith("rejected/stream/dt=2026-11-26/stream+0+0000000000000000010")
