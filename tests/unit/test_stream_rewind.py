"""A run fetched before its partition was sought back is never folded (pipeline.py ``_run``).

One fetch brings runs for partitions A and B; A's count cut takes B's ripe cut into its round
and B's PUT fails, so B's cut is abandoned and B sought back to the cut's first offset. B's
run of that same fetch must then be dropped (the seek brings its records again): folded, it
made ``_in_sequence`` skip the records of the abandoned cut when they came again, and the
commit moved past events that were never archived. The loop runs on a record source that
serves a partition log the way Kafka does (from each partition's position, a seek moves it);
S3, the changelog and the group's commits are the fakes of test_stream_rounds."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Callable
from datetime import timedelta

import orjson
from aiokafka import TopicPartition
from aiokafka.errors import ConsumerStoppedError

from eventpipe.settings import Settings
from eventpipe.stream.batch import PartitionBatch
from eventpipe.stream.clients import StreamClients
from eventpipe.stream.cuts import CutPolicy
from eventpipe.stream.metrics import StreamMetrics
from eventpipe.stream.partition import Owned
from eventpipe.stream.pipeline import ROUND_FRACTION, Pipeline
from eventpipe.stream.source import Run
from tests.support.batches import event
from tests.support.clock import ManualClock
from tests.unit.test_stream_rounds import BOUND_S, S3, T0, Changelog, Consumer, Producer, commits, tag_objects

A, B = TopicPartition("events", 0), TopicPartition("events", 1)


class PartitionLog:
    """Each partition's records up to what has been produced, read from its position; every
    fetch first runs the next step of the script, and the consumer stops after the last."""

    def __init__(self, script: list[Callable[[], None]]) -> None:
        self.script = script
        self.produced: dict[int, list[bytes]] = {A.partition: [], B.partition: []}
        self.position = dict.fromkeys(self.produced, 0)

    def produce(self, tp: TopicPartition, values: list[bytes]) -> None:
        self.produced[tp.partition] += values

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.position[tp.partition] = offset

    async def fetch(self, max_records: int, timeout_ms: int) -> dict[int, Run]:
        if not self.script:
            raise ConsumerStoppedError()
        self.script.pop(0)()
        out: dict[int, Run] = {}
        for p, values in self.produced.items():  # partition A's run before B's
            start = self.position[p]
            if start < len(values):
                out[p] = (list(range(start, len(values))), values[start:])
                self.position[p] = len(values)
        return out

    def highwater(self, tp: TopicPartition) -> int | None:
        return len(self.produced[tp.partition])


def owned(pipe: Pipeline, tp: TopicPartition, max_events: int, clock: ManualClock) -> Owned:
    policy = CutPolicy(max_events, 1 << 20, BOUND_S, clock)
    part = Owned(tp, PartitionBatch(tp.partition, policy), verify=False)
    pipe.parts[tp.partition] = part
    tag_objects(part)
    return part


def archived(s3: S3, tp: TopicPartition) -> list[str]:
    """The messageIds in the partition's raw objects, in offset order."""
    ours = (o for o in s3.objects.values() if o.metadata["partition"] == str(tp.partition))
    raw = [o for o in ours if o.table == "events"]
    raw.sort(key=lambda o: int(o.metadata["first-offset"]))
    return [orjson.loads(line)["messageId"] for o in raw for line in gzip.decompress(o.body).splitlines()]


def test_a_run_fetched_before_its_partition_was_sought_back_is_not_folded() -> None:
    clock = ManualClock()
    at = [T0 + timedelta(seconds=i) for i in range(10)]
    sent = {tp: [event(100 * tp.partition + i, at[i]) for i in range(10)] for tp in (A, B)}
    log: list[object] = []
    s3 = S3(log)

    def first_fetch() -> None:  # B's cut opens
        records.produce(B, sent[B][:5])

    def second_fetch() -> None:  # A's run fills its count cut; B's cut is ripe and its PUT fails
        clock.advance(BOUND_S * ROUND_FRACTION)
        records.produce(A, sent[A])
        records.produce(B, sent[B][5:])
        s3.failing.add((B.partition, "events"))

    def third_fetch() -> None:  # S3 is back; B is read again from where it was sought
        s3.failing.clear()

    def fourth_fetch() -> None:  # B's cut is due on the flush bound
        clock.advance(BOUND_S)

    records = PartitionLog([first_fetch, second_fetch, third_fetch, fourth_fetch])
    pipe = Pipeline(Settings(flush_interval_s=BOUND_S), StreamMetrics(), clock=clock)
    clients = StreamClients(Consumer(log), Producer(log), s3, Changelog(log), records=records)  # type: ignore[arg-type]
    pipe.attach(clients)
    owned(pipe, A, 10, clock)
    part_b = owned(pipe, B, 1000, clock)

    asyncio.run(pipe._run())

    expected = {tp: [orjson.loads(v)["messageId"] for v in values] for tp, values in sent.items()}
    assert archived(s3, A) == expected[A]
    assert archived(s3, B) == expected[B]  # the abandoned cut's records were lost here
    # B's fence in A's round (its PUT then fails), the retried cut's fence, then its commit
    assert [c[B.partition] for c in commits(log) if B.partition in c] == [0, 0, 10]
    assert part_b.committed == 10
    assert pipe.metrics.flush_failures._value.get() == 1
