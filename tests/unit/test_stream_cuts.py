"""Cut policy (fake clock) and a partition batch's objects: deterministic cuts, the time
bound, replays that cut at a recorded last offset, rejected records."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import orjson
from aiokafka import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from eventpipe.settings import Settings
from eventpipe.stream.batch import PartitionBatch
from eventpipe.stream.cuts import CutPolicy
from eventpipe.stream.metrics import StreamMetrics
from eventpipe.stream.partition import Owned
from eventpipe.stream.pipeline import FETCH_WAIT_MS, Pipeline
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


def test_a_cut_says_when_the_time_bound_falls_due() -> None:
    """What the loop's fetch waits for at most: a caught-up worker writes the cut on time."""
    clock = ManualClock()
    p = policy(clock)
    assert p.expires_in() is None  # nothing open
    p.add(7, "2026-11-26T10", 10)
    assert p.expires_in() == 10
    clock.advance(9.75)
    assert p.expires_in() == 0.25 and not p.expired()
    clock.advance(1)
    assert p.expires_in() == 0 and p.expired()
    p.force(9)  # replaying a recorded cut: no wall-clock bound
    assert p.expires_in() is None


def test_the_fetch_waits_no_longer_than_the_first_cut_due() -> None:
    clock = ManualClock()
    pipe = Pipeline(Settings(), StreamMetrics(), clock=clock)
    assert pipe._fetch_wait_ms() == FETCH_WAIT_MS  # nothing owned
    for p in (0, 1):
        pipe.parts[p] = Owned(TopicPartition("events", p), PartitionBatch(p, policy(clock)))
    assert pipe._fetch_wait_ms() == FETCH_WAIT_MS  # no cut open
    pipe.parts[0].batch.policy.add(3, "2026-11-26T10", 10)
    clock.advance(9.875)
    pipe.parts[1].batch.policy.add(5, "2026-11-26T10", 10)
    assert pipe._fetch_wait_ms() == 125  # partition 0's cut is due in 125 ms
    clock.advance(0.125)
    assert pipe._fetch_wait_ms() == 0


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


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2), st.integers(1, 40)), min_size=1, max_size=60),
    st.integers(1, 12),
    st.integers(1, 120),
    st.integers(0, 3),
)
def test_a_run_at_once_cuts_exactly_where_record_by_record_does(
    records: list[tuple[int, int]], max_events: int, max_bytes: int, already: int
) -> None:
    """``room`` + ``add_many`` (a fetched run at once) against ``before`` + ``add`` per record:
    the same cuts (first, last, reason) for any hours, sizes and limits, from an empty cut
    or one already holding ``already`` records."""
    hours = [f"2026-11-26T{10 + h:02d}" for h, _ in records]
    tags, sizes = [10 + h for h, _ in records], [size for _, size in records]

    def opened() -> tuple[CutPolicy, list[tuple[int, int, str]], Callable[[str | None], None]]:
        """A policy holding ``already`` one-byte records, its cuts, and what closes one."""
        p, cuts = CutPolicy(max_events, max_bytes, 10, ManualClock()), []

        def close(why: str | None) -> None:
            if why is not None:
                cuts.append((p.first_offset, p.last_offset, why))
                p.reset()

        for k in range(already):
            close(p.add(k, hours[0], 1))
        return p, cuts, close

    def per_record() -> list[tuple[int, int, str]]:
        p, cuts, close = opened()
        for k, (hour, size) in enumerate(zip(hours, sizes, strict=True), start=already):
            close(p.before(k, hour, size))
            close(p.add(k, hour, size))
        return cuts

    def at_once() -> list[tuple[int, int, str]]:
        p, cuts, close = opened()
        i = 0
        while i < len(sizes):
            room = p.room(hours[i], tags, sizes, i)
            if room:
                first = i + already
                why = p.add_many(first, first + room - 1, hours[i], room, sum(sizes[i : i + room]))
                i += room
            else:  # a cut is due before record i: what the per-record path does for it
                k = i + already
                if (due := p.before(k, hours[i], sizes[i])) is None:
                    raise AssertionError("room 0 although no cut is due")
                close(due)
                why = p.add(k, hours[i], sizes[i])
                i += 1
            close(why)
        return cuts

    assert at_once() == per_record()
