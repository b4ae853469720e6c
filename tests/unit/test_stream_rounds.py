"""Cuts written in rounds (services/stream/writer.py ``write_round``, pipeline.py
``_write_due``): several partitions' cuts fenced together, written concurrently, committed
in one request -- each partition still in the order of a lone cut, a commit never before
every object and state record of the cuts it carries, and a failing partition fenced or
abandoned alone. Kafka and S3 are fakes; tests/unit/test_stream_fence.py has the lone cut."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from eventpipe.errors import StorageError
from eventpipe.settings import Settings
from eventpipe.stream import writer
from eventpipe.stream.batch import PartitionBatch, S3Object
from eventpipe.stream.clients import StreamClients
from eventpipe.stream.cuts import CutPolicy
from eventpipe.stream.metrics import StreamMetrics
from eventpipe.stream.partition import Owned
from eventpipe.stream.pipeline import ROUND_FRACTION, Pipeline
from tests.support.batches import event, fill
from tests.support.clock import ManualClock

T0 = datetime(2026, 11, 26, 9, 0, 1, tzinfo=UTC)
BOUND_S = 10.0
TPS = [TopicPartition("events", p) for p in range(3)]


class Consumer:
    """The group's committed offsets; each commit request logged whole."""

    def __init__(self, log: list[Any]) -> None:
        self.log = log
        self.group: dict[TopicPartition, int] = {}
        self.refuse = False  # the coordinator no longer knows this member
        self.unassigned: set[TopicPartition] = set()
        self.paused: set[TopicPartition] = set()
        self.sought: dict[int, int] = {}

    async def committed(self, tp: TopicPartition) -> int | None:
        return self.group.get(tp)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if offsets.keys() & self.unassigned:
            raise IllegalStateError("partition not assigned")  # aiokafka checks before sending
        await asyncio.sleep(0)
        if self.refuse:
            raise CommitFailedError("already rebalanced")
        self.group.update(offsets)
        self.log.append(("commit", {tp.partition: offset for tp, offset in offsets.items()}))

    def pause(self, tp: TopicPartition) -> None:
        self.paused.add(tp)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.sought[tp.partition] = offset


class S3:
    def __init__(self, log: list[Any]) -> None:
        self.log = log
        self.objects: dict[str, S3Object] = {}
        self.failing: set[tuple[int, str]] = set()  # (partition, table) whose PUT fails
        self.slow: set[int] = set()  # partitions whose PUTs take a while

    async def recorded_last_offset(self, key: str, torn_ok: bool = False) -> int | None:
        obj = self.objects.get(key)
        return None if obj is None else int(obj.metadata["last-offset"])

    async def put(self, obj: S3Object, exclusive: bool = False) -> None:
        partition = int(obj.metadata["partition"])
        await asyncio.sleep(0.02 if partition in self.slow else 0)
        if (partition, obj.table) in self.failing:
            raise StorageError(f"PUT {obj.key} failed after retries")
        self.objects[obj.key] = obj
        self.log.append(("put", partition, obj.table))


class Changelog:
    def __init__(self, log: list[Any]) -> None:
        self.log = log

    async def flush(self, partition: int, state: Any, records: list[Any]) -> int:
        await asyncio.sleep(0)
        self.log.append(("state", partition))
        return len(records)


class Producer:
    def __init__(self, log: list[Any]) -> None:
        self.log = log

    async def send(self, topic: str, value: bytes, key: bytes) -> Any:
        self.log.append(("notice",))
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


def setup(clock: ManualClock | None = None) -> tuple[Pipeline, list[Any], Consumer, S3]:
    log: list[Any] = []
    consumer, s3 = Consumer(log), S3(log)
    pipe = Pipeline(Settings(flush_interval_s=BOUND_S), StreamMetrics(), clock=clock)
    pipe.attach(StreamClients(consumer, Producer(log), s3, Changelog(log)))  # type: ignore[arg-type]
    return pipe, log, consumer, s3


def open_cut(pipe: Pipeline, tp: TopicPartition, n: int = 5, clock: ManualClock | None = None) -> Owned:
    batch = PartitionBatch(tp.partition, CutPolicy(1000, 1 << 20, BOUND_S, clock or ManualClock()))
    fill(batch, [event(100 * tp.partition + i, T0 + timedelta(seconds=i)) for i in range(n)])
    part = Owned(tp, batch, verify=False, next_offset=n)
    pipe.parts[tp.partition] = part
    return part


def tag_objects(part: Owned) -> None:
    """Mark each object with its partition (the fake S3 fails or slows PUTs by partition)."""
    real = part.batch.objects

    def objects(*args: Any, **kwargs: Any) -> list[S3Object]:
        out = real(*args, **kwargs)
        for obj in out:
            obj.metadata["partition"] = str(part.tp.partition)
        return out

    part.batch.objects = objects  # type: ignore[method-assign]


def write_round(pipe: Pipeline, parts: list[Owned]) -> list[bool]:
    for part in parts:
        tag_objects(part)

    async def run() -> list[bool]:
        done = await pipe.writer.write_round([(part, "time") for part in parts])
        await pipe.writer.drain()
        return done

    return asyncio.run(run())


def commits(log: list[Any]) -> list[dict[int, int]]:
    return [entry[1] for entry in log if entry[0] == "commit"]


def test_a_round_is_fenced_together_and_committed_once_after_every_object_and_record() -> None:
    pipe, log, _consumer, s3 = setup()
    parts = [open_cut(pipe, tp) for tp in TPS]
    s3.slow = {2}  # one partition's objects land last: the commit still waits for them
    assert write_round(pipe, parts) == [True, True, True]
    # one membership probe for the three (committed offsets unchanged), one commit of their ends
    assert commits(log) == [{0: 0, 1: 0, 2: 0}, {0: 5, 1: 5, 2: 5}]
    end = log.index(("commit", {0: 5, 1: 5, 2: 5}))
    writes = [i for i, e in enumerate(log) if e[0] in ("put", "state")]
    assert len(writes) == 3 * 3  # per partition: raw object, engagement_daily, state
    assert max(writes) < end  # nothing committed before all objects and records are written
    assert all(e == ("notice",) for e in log[end + 1 :]) and ("notice",) not in log[:end]
    for p in range(3):  # each partition's own order: probe, raw object before its aggregates
        puts = [e[2] for e in log if e[0] == "put" and e[1] == p]
        assert puts == ["events", "engagement_daily"]
    assert all(part.committed == 5 and not part.batch.policy.is_open for part in parts)
    assert pipe.metrics.cuts.labels("time")._value.get() == 3


def test_a_partition_whose_write_fails_is_abandoned_alone() -> None:
    pipe, log, consumer, s3 = setup()
    parts = [open_cut(pipe, tp) for tp in TPS]
    s3.failing = {(1, "engagement_daily")}  # after its raw object was written
    assert write_round(pipe, parts) == [True, False, True]
    assert commits(log)[-1] == {0: 5, 2: 5}  # never partition 1's end
    assert consumer.group.get(TPS[1]) == 0  # the probe's unchanged offset, nothing beyond
    assert consumer.sought == {1: 0}  # read again from its first offset: the replay
    failed = parts[1]
    assert failed.verify and failed.committed == -1 and not failed.batch.policy.is_open
    assert failed.fenced_at is None and not consumer.paused
    assert pipe.metrics.flush_failures._value.get() == 1
    assert ("notice",) in log and len([e for e in log if e == ("notice",)]) == 4  # 2 cuts x 2 objects


def test_a_partition_owned_elsewhere_is_fenced_alone() -> None:
    """The zombie of fault scenario 6 in a round: partition 1 was committed beyond its cut
    by its new owner; the other two are still this worker's."""
    pipe, log, consumer, _s3 = setup()
    consumer.group[TPS[1]] = 40
    parts = [open_cut(pipe, tp) for tp in TPS]
    assert write_round(pipe, parts) == [True, False, True]
    assert commits(log) == [{0: 0, 2: 0}, {0: 5, 2: 5}]  # partition 1 in neither commit
    assert not [e for e in log if e[0] in ("put", "state") and e[1] == 1]  # nothing written for it
    assert consumer.group[TPS[1]] == 40 and consumer.paused == {TPS[1]}
    assert parts[1].fenced_at is not None and pipe.owned() == [0, 2]


def test_a_member_the_coordinator_refuses_writes_nothing_of_the_round() -> None:
    pipe, log, consumer, s3 = setup()
    consumer.refuse = True
    parts = [open_cut(pipe, tp) for tp in TPS]
    assert write_round(pipe, parts) == [False, False, False]
    assert log == [] and s3.objects == {} and consumer.group == {}
    assert consumer.paused == set(TPS) and pipe.metrics.fenced._value.get() == 3


def test_a_partition_no_longer_assigned_is_found_and_fenced_alone() -> None:
    pipe, log, consumer, _s3 = setup()
    consumer.unassigned = {TPS[0]}
    parts = [open_cut(pipe, tp) for tp in TPS]
    assert write_round(pipe, parts) == [False, True, True]
    assert commits(log) == [{1: 0}, {2: 0}, {1: 5, 2: 5}]  # the probe one by one, then one commit
    assert not [e for e in log if e[0] in ("put", "state") and e[1] == 0]
    assert consumer.paused == {TPS[0]}


def test_a_cut_due_on_time_takes_along_the_cuts_open_for_half_the_bound() -> None:
    clock = ManualClock()
    pipe, log, _consumer, _s3 = setup(clock)
    young_age = BOUND_S * ROUND_FRACTION - 0.5  # all steps exact in binary: no rounding at the edge
    due = open_cut(pipe, TPS[0], clock=clock)
    clock.advance(BOUND_S - BOUND_S * ROUND_FRACTION)
    ripe = open_cut(pipe, TPS[1], clock=clock)  # open exactly the fraction when the first is due
    clock.advance(BOUND_S * ROUND_FRACTION - young_age)
    young = open_cut(pipe, TPS[2], clock=clock)
    for part in (due, ripe, young):
        tag_objects(part)
    clock.advance(young_age - 0.25)
    asyncio.run(pipe._write_due())  # nothing due yet: nothing written
    assert log == []
    clock.advance(0.25)
    asyncio.run(pipe._write_due())
    assert commits(log) == [{0: 0, 1: 0}, {0: 5, 1: 5}]
    assert young.batch.policy.is_open and young.committed == -1
    assert pipe.metrics.cuts.labels("time")._value.get() == 1
    assert pipe.metrics.cuts.labels("round")._value.get() == 1


def test_a_round_of_one_partition_is_a_lone_cut() -> None:
    pipe, log, _consumer, _s3 = setup()
    part = open_cut(pipe, TPS[0])
    tag_objects(part)
    assert asyncio.run(pipe.writer.write(part, "count"))
    assert commits(log) == [{0: 0}, {0: 5}]
    assert pipe.metrics.cuts.labels("count")._value.get() == 1
    # no open cut: nothing to write, nothing refused
    assert asyncio.run(pipe.writer.write_round([(part, "time")])) == [True]
    assert len(commits(log)) == 2


def test_a_count_cut_takes_along_the_ripe_cuts_and_an_hour_cut_goes_alone() -> None:
    clock = ManualClock()
    pipe, log, _consumer, _s3 = setup(clock)
    full = open_cut(pipe, TPS[0], clock=clock)
    ripe = open_cut(pipe, TPS[1], clock=clock)
    clock.advance(BOUND_S * ROUND_FRACTION - 0.5)  # exact in binary: no rounding at the edge
    young = open_cut(pipe, TPS[2], clock=clock)
    for part in (full, ripe, young):
        tag_objects(part)
    clock.advance(0.5)  # the first two open for exactly the fraction, the third for 0.5 s
    assert asyncio.run(pipe._write_inline(full, "hour"))  # its own boundary: alone
    assert commits(log) == [{0: 0}, {0: 5}]
    assert ripe.batch.policy.is_open and young.batch.policy.is_open

    full = open_cut(pipe, TopicPartition("events", 3), clock=clock)
    tag_objects(full)
    assert asyncio.run(pipe._write_inline(full, "count"))
    assert commits(log)[2:] == [{3: 0, 1: 0}, {3: 5, 1: 5}]
    assert not ripe.batch.policy.is_open and ripe.committed == 5
    assert young.batch.policy.is_open and young.committed == -1
    assert pipe.metrics.cuts.labels("count")._value.get() == 1
    assert pipe.metrics.cuts.labels("round")._value.get() == 1


def test_a_cut_whose_raw_gzip_is_slow_does_not_hold_back_the_others(monkeypatch: Any) -> None:
    """Each cut's writes wait for its own preparation only: partition 0's raw object is
    written while partition 2's gzip is still running (it finishes only once that PUT is
    seen, or after a bounded wait that makes the test fail); the commit still waits for all."""
    pipe, log, _consumer, s3 = setup()
    parts = [open_cut(pipe, tp) for tp in TPS]
    put_seen = threading.Event()
    real_put, real_gzip = s3.put, writer.gzip_raw

    async def put(obj: S3Object, exclusive: bool = False) -> None:
        await real_put(obj, exclusive)
        if obj.metadata["partition"] == "0" and obj.table == "events":
            put_seen.set()

    def gzip(lines: list[bytes]) -> bytes:
        if lines is parts[2].batch.lines:
            put_seen.wait(timeout=5)
            log.append(("gzipped", 2))
        return real_gzip(lines)

    s3.put = put  # type: ignore[method-assign]
    monkeypatch.setattr(writer, "gzip_raw", gzip)
    assert write_round(pipe, parts) == [True, True, True]
    assert log.index(("put", 0, "events")) < log.index(("gzipped", 2))
    end = log.index(("commit", {0: 5, 1: 5, 2: 5}))
    assert max(i for i, e in enumerate(log) if e[0] in ("put", "state", "gzipped")) < end
