"""Fencing of a cut (services/stream/pipeline.py): a worker that lost its partition writes
nothing for it -- no object, no state, no notice, no commit -- and no existing object is
ever replaced by a different cut. Kafka and S3 are fakes here; the real thing (a worker
paused past its session timeout) is tests/integration/test_stream_fence.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, OutOfOrderSequenceNumber

from eventpipe.settings import Settings
from eventpipe.stream.batch import PartitionBatch, S3Object
from eventpipe.stream.clients import StreamClients
from eventpipe.stream.cuts import CutPolicy
from eventpipe.stream.fold import PartitionState
from eventpipe.stream.metrics import StreamMetrics
from eventpipe.stream.partition import Owned
from eventpipe.stream.pipeline import FENCE_HOLD_S, Pipeline
from eventpipe.stream.storage import UNRECORDED
from tests.support.batches import event, fill
from tests.support.clock import ManualClock

T0 = datetime(2026, 11, 26, 9, 0, 1, tzinfo=UTC)
TP = TopicPartition("events", 1)


class FakeConsumer:
    def __init__(self, committed: int | None = 0, refuse: bool = False) -> None:
        self.group_committed = committed
        self.refuse = refuse  # the coordinator no longer knows this member
        self.commits: list[int] = []
        self.paused: set[TopicPartition] = set()
        self.sought: list[int] = []
        self.log: list[str] | None = None

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.group_committed

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.refuse:
            raise CommitFailedError("already rebalanced")
        (offset,) = offsets.values()
        self.commits.append(offset)
        self.group_committed = offset
        if self.log is not None:
            self.log.append(f"commit {offset}")

    def pause(self, tp: TopicPartition) -> None:
        self.paused.add(tp)

    def resume(self, tp: TopicPartition) -> None:
        self.paused.discard(tp)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.sought.append(offset)


class FakeS3:
    def __init__(self, log: list[str]) -> None:
        self.objects: dict[str, S3Object] = {}
        self.log = log

    async def recorded_last_offset(self, key: str, torn_ok: bool = False) -> int | None:
        obj = self.objects.get(key)
        if obj is None:
            return None
        if "last-offset" not in obj.metadata:
            assert torn_ok
            return UNRECORDED
        return int(obj.metadata["last-offset"])

    async def put(self, obj: S3Object, exclusive: bool = False) -> None:
        self.objects[obj.key] = obj
        self.log.append(f"put {obj.table}")


class FakeChangelog:
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.restored: dict[int, PartitionState] = {}

    async def restore(self, starts: dict[int, int]) -> dict[int, PartitionState]:
        self.restored = {p: PartitionState() for p in starts}
        return self.restored

    async def flush(self, partition: int, state: Any, records: list[Any]) -> int:
        self.log.append("state")
        return 0


class FakeProducer:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def send(self, topic: str, value: bytes, key: bytes) -> Any:
        self.log.append("notice")
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def values(n: int, first: int = 0) -> list[bytes]:
    return [event(first + i, T0 + timedelta(seconds=i)) for i in range(n)]


def open_cut(n: int, first: int = 0) -> Owned:
    batch = PartitionBatch(TP.partition, CutPolicy(1000, 1 << 20, 10, ManualClock()))
    fill(batch, values(n, first), first_offset=first)
    return Owned(TP, batch, verify=False, next_offset=first + n)


def pipeline(consumer: FakeConsumer, clock: ManualClock | None = None) -> tuple[Pipeline, list[str], FakeS3]:
    log: list[str] = []
    consumer.log = log
    pipe = Pipeline(Settings(), StreamMetrics(), clock=clock)
    s3 = FakeS3(log)
    pipe.attach(StreamClients(consumer, FakeProducer(log), s3, FakeChangelog(log)))  # type: ignore[arg-type]
    return pipe, log, s3


def written_by(n: int, first: int = 0) -> dict[str, S3Object]:
    return {o.key: o for o in open_cut(n, first).batch.objects(False, T0)}


def cut(pipe: Pipeline, part: Owned) -> bool:
    """Write the open cut, then let its notices' deliveries finish (as the worker's stop does)."""
    pipe.parts[part.tp.partition] = part

    async def write_and_drain() -> bool:
        written = await pipe.writer.write(part, "time")
        await pipe.writer.drain()
        return written

    return asyncio.run(write_and_drain())


def in_write_order(log: list[str], objects: list[str], commit: str) -> None:
    """The order a cut's writes must keep: the fence's probe first; the raw object before every
    other object; the state and every object before the commit; notices after it. The state
    and the objects may interleave (the changelog is written while the keys are checked)."""
    assert log[0] == "commit 0"  # the fence's membership probe
    assert sorted(e for e in log if e.startswith("put")) == sorted(f"put {table}" for table in objects)
    puts = [i for i, e in enumerate(log) if e.startswith("put")]
    if "events" in objects:
        assert log[puts[0]] == "put events"
    end = log.index(commit)
    assert max(puts) < end and log.index("state") < end
    assert all(e == "notice" for e in log[end + 1 :]) and "notice" not in log[:end]


def test_a_cut_is_fenced_written_committed_then_announced() -> None:
    consumer = FakeConsumer(committed=0)
    pipe, log, s3 = pipeline(consumer)
    assert cut(pipe, open_cut(5))
    in_write_order(log, ["events", "engagement_daily"], "commit 5")
    assert log.count("notice") == 2
    assert consumer.commits == [0, 5]  # the membership probe commits the committed offset unchanged
    assert sorted(s3.objects) == sorted(written_by(5))


@pytest.mark.parametrize(
    "consumer",
    [FakeConsumer(committed=40), FakeConsumer(committed=0, refuse=True)],
    ids=["the-group-committed-beyond-the-cut", "the-coordinator-refuses-the-member"],
)
def test_a_worker_that_lost_its_partition_writes_nothing(consumer: FakeConsumer) -> None:
    """The zombie of fault scenario 6: its open cut (0-4) is shorter than the one the new
    owner wrote and committed (0-39); it must not replace it, nor write state or notices."""
    pipe, log, s3 = pipeline(consumer)
    committed_before = consumer.group_committed  # 40 (the owner's) or 0 (the refusing coordinator's)
    s3.objects = theirs = written_by(40)
    part = open_cut(5)
    assert not cut(pipe, part)
    assert s3.objects is theirs and {k: o.metadata["last-offset"] for k, o in s3.objects.items()} == {
        k: "39" for k in theirs
    }
    assert [entry for entry in log if not entry.startswith("commit")] == []  # no put, state, notice
    assert consumer.group_committed == committed_before  # the stale worker moved nothing
    assert 5 not in consumer.commits  # never committed its own cut's end
    assert TP in consumer.paused and part.fenced_at is not None and not part.batch.policy.is_open
    assert pipe.owned() == []
    assert pipe.metrics.fenced._value.get() == 1


def test_a_fenced_partition_is_held_for_the_rebalance_then_read_again_from_the_committed_offset() -> None:
    """No rebalance came to take the fenced partition away: after ``FENCE_HOLD_S`` (on the
    clock port: no sleeping) it is adopted again -- state from the changelog, reading from
    the group's committed offset -- so the fence checks run again on the next cut."""
    clock = ManualClock()
    consumer = FakeConsumer(committed=40)  # another worker wrote and committed 0-39
    pipe, _, _ = pipeline(consumer, clock)
    part = open_cut(5)
    assert not cut(pipe, part)
    assert pipe.owned() == [] and TP in consumer.paused

    clock.advance(FENCE_HOLD_S)  # not yet beyond the hold
    asyncio.run(pipe.reclaim_stale_fences())
    assert pipe.parts[TP.partition] is part and pipe.owned() == [] and TP in consumer.paused
    assert consumer.sought == []

    clock.advance(1)
    asyncio.run(pipe.reclaim_stale_fences())
    fresh = pipe.parts[TP.partition]
    assert fresh is not part and fresh.fenced_at is None and fresh.rewound and fresh.seeks == 1
    assert fresh.next_offset == 40 and consumer.sought == [40]  # the committed offset
    assert TP not in consumer.paused and pipe.owned() == [TP.partition]
    assert fresh.batch.state is pipe.changelog.restored[TP.partition]  # type: ignore[attr-defined]


def test_an_object_of_another_cut_is_never_overwritten() -> None:
    """The other order: the stale worker wrote first (0-4); the owner's longer cut (0-39)
    diverges, is abandoned and read again from its first offset (then follows 0-4)."""
    consumer = FakeConsumer(committed=0)
    pipe, log, s3 = pipeline(consumer)
    s3.objects = theirs = dict(written_by(5))
    part = open_cut(40)
    assert not cut(pipe, part)
    assert s3.objects == theirs
    # the probe, and the state's records (written while the keys are checked: state may run
    # ahead of the committed offset, the replay re-folds exactly); no object, no commit
    assert sorted(log) == ["commit 0", "state"]
    assert consumer.sought == [0] and part.verify and part.fenced_at is None
    assert pipe.metrics.flush_failures._value.get() == 1


def test_a_replay_writes_only_what_is_missing_and_a_failed_commit_announces_nothing() -> None:
    consumer = FakeConsumer(committed=0)
    pipe, log, s3 = pipeline(consumer)
    first_run = written_by(5).values()
    raw = next(o for o in first_run if o.table == "events")
    agg = next(o for o in first_run if o.table != "events")
    torn = S3Object(agg.key, agg.table, agg.body[:10], agg.rows, {})  # killed mid-PUT (s3rver)
    s3.objects = {raw.key: raw, agg.key: torn}
    part = open_cut(5)
    part.raw_exists = True
    assert cut(pipe, part)
    in_write_order(log, ["engagement_daily"], "commit 5")
    assert log.count("notice") == 2
    assert s3.objects[agg.key].body == agg.body

    log.clear()
    again = open_cut(5, first=5)
    consumer.refuse = True  # expelled while writing: the final commit fails
    assert not cut(pipe, again)
    assert "notice" not in log and again.fenced_at is not None


class SequenceBrokenChangelog(FakeChangelog):
    """Fails the first flush as a producer out of step with the broker does after an outage."""

    def __init__(self, log: list[str]) -> None:
        super().__init__(log)
        self.producer: Any = None
        self.failures = 1

    async def flush(self, partition: int, state: Any, records: list[Any]) -> int:
        if self.failures:
            self.failures -= 1
            raise OutOfOrderSequenceNumber()
        return await super().flush(partition, state, records)


class StoppableProducer(FakeProducer):
    def __init__(self, log: list[str], name: str) -> None:
        super().__init__(log)
        self.name = name

    async def send(self, topic: str, value: bytes, key: bytes) -> Any:
        self.log.append(f"notice via {self.name}")
        return await super().send(topic, value, key)

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")


def test_a_producer_out_of_step_with_the_broker_is_replaced_and_the_cut_replayed() -> None:
    log: list[str] = []
    consumer = FakeConsumer(committed=0)
    consumer.log = log
    changelog = SequenceBrokenChangelog(log)
    old = StoppableProducer(log, "old")
    changelog.producer = old
    made: list[StoppableProducer] = []

    async def new_producer() -> Any:
        made.append(StoppableProducer(log, f"new{len(made) + 1}"))
        return made[-1]

    pipe = Pipeline(Settings(), StreamMetrics())
    clients = StreamClients(consumer, old, FakeS3(log), changelog, new_producer)  # type: ignore[arg-type]
    pipe.attach(clients)

    assert not cut(pipe, open_cut(5))  # abandoned: nothing committed
    assert consumer.commits == [0] and consumer.sought == [0]  # the fence's claim only, then a rewind
    assert made == []  # replaced only when the partition is written again
    log.clear()
    assert cut(pipe, open_cut(5))  # the replay
    assert log.index("stop old") < log.index("commit 5")
    assert [p.name for p in made] == ["new1"]
    assert clients.producer is made[0] and changelog.producer is made[0]
    assert "stop old" in log and "notice via new1" in log and "notice via old" not in log
    assert consumer.commits[-1] == 5
    log.clear()
    assert cut(pipe, open_cut(3, first=5))  # healthy again: no further replacement
    assert len(made) == 1


class CountingS3(FakeS3):
    def __init__(self, log: list[str]) -> None:
        super().__init__(log)
        self.heads: list[str] = []

    async def recorded_last_offset(self, key: str, torn_ok: bool = False) -> int | None:
        self.heads.append(key)
        return await super().recorded_last_offset(key, torn_ok)


def test_a_fresh_cut_checks_its_raw_key_only_and_a_replay_checks_every_key() -> None:
    """No aggregate object of a cut exists without its raw object (written first and alone):
    a raw key that is free answers for the cut's aggregate keys; one that is taken (a replay)
    makes the writer check them too."""
    consumer = FakeConsumer(committed=0)
    pipe, log, _ = pipeline(consumer)
    s3 = CountingS3(log)
    pipe.writer.s3 = s3  # type: ignore[assignment]
    mine = written_by(5)
    raw_key = next(k for k, o in mine.items() if o.table == "events")
    assert len(mine) > 1  # raw + aggregate objects
    assert cut(pipe, open_cut(5))
    assert s3.heads == [raw_key]
    assert sorted(s3.objects) == sorted(mine)

    s3.heads.clear()
    del s3.objects[next(k for k, o in mine.items() if o.table != "events")]  # a replay finds one missing
    replay = open_cut(5)
    replay.raw_exists = True
    consumer.group_committed = 0
    assert cut(pipe, replay)
    assert sorted(s3.heads) == sorted(mine)
    assert sorted(s3.objects) == sorted(mine)


class SlowConsumer(FakeConsumer):
    """A coordinator a few loop turns away: while the fence waits for it, nothing of the cut
    may be written (the gzip and the state's records are prepared meanwhile, in threads)."""

    async def committed(self, tp: TopicPartition) -> int | None:
        for _ in range(5):
            await asyncio.sleep(0)
        return await super().committed(tp)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        for _ in range(5):
            await asyncio.sleep(0)
        await super().commit(offsets)


def test_nothing_is_written_before_the_fence_has_answered() -> None:
    pipe, log, s3 = pipeline(SlowConsumer(committed=0))
    assert cut(pipe, open_cut(5))
    in_write_order(log, ["events", "engagement_daily"], "commit 5")
    assert sorted(s3.objects) == sorted(written_by(5))  # the raw body gzipped in its thread: the same bytes


def test_a_slow_fence_that_fails_writes_nothing() -> None:
    consumer = SlowConsumer(committed=0, refuse=True)
    pipe, log, s3 = pipeline(consumer)
    part = open_cut(5)
    assert not cut(pipe, part)
    assert log == [] and s3.objects == {} and part.fenced_at is not None


class FailingNotices(FakeProducer):
    """The broker takes the notices but never acknowledges them (a producer out of step)."""

    async def send(self, topic: str, value: bytes, key: bytes) -> Any:
        self.log.append("notice")
        future = asyncio.get_running_loop().create_future()
        future.set_exception(OutOfOrderSequenceNumber())
        return future


def test_notices_are_queued_after_the_commit_and_a_failed_delivery_only_logs() -> None:
    """Notices are hints (the loader also lists S3): the cut is written and committed whether
    or not they arrive; their delivery is awaited off the loop's path, and a producer that
    fails them is replaced before the next cut."""
    log: list[str] = []
    consumer = FakeConsumer(committed=0)
    consumer.log = log
    pipe = Pipeline(Settings(), StreamMetrics())
    pipe.attach(StreamClients(consumer, FailingNotices(log), FakeS3(log), FakeChangelog(log)))  # type: ignore[arg-type]
    part = open_cut(5)
    assert cut(pipe, part)
    in_write_order(log, ["events", "engagement_daily"], "commit 5")
    assert part.committed == 5 and consumer.commits == [0, 5]
    assert pipe.writer.producer_broken and not pipe.writer.notices
