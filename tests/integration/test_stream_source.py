"""The librdkafka record source against real Kafka: every fetch continues each partition
exactly where the pipeline stands, through seeks back and forth (nothing fetched before a
seek is handed out after it), pauses and revocations; the group consumer beside it keeps
its partitions paused."""

from __future__ import annotations

import asyncio
import random

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from eventpipe.settings import Settings
from eventpipe.stream.source import LibrdkafkaRecords

PER_PARTITION = 4000


async def produce(settings: Settings, partitions: list[int]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for p in partitions:
            topic = settings.events_topic
            sends = [await producer.send(topic, value(p, o), partition=p) for o in range(PER_PARTITION)]
            await asyncio.gather(*sends)
    finally:
        await producer.stop()


def value(partition: int, offset: int) -> bytes:
    return b'{"p": %d, "o": %d}' % (partition, offset)


async def read_through_seeks(settings: Settings) -> None:
    partitions = [0, 1, 2]
    await produce(settings, partitions)
    tps = [TopicPartition(settings.events_topic, p) for p in partitions]
    group = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await group.start()
    group.assign(tps)
    source = LibrdkafkaRecords(settings, group)
    rng = random.Random(16)
    try:
        at = {p: 0 for p in partitions}
        for tp in tps:
            source.assign(tp, 0)
        assert group.paused() == set(tps)  # the group consumer fetches nothing
        source.pause(tps[1])
        seen = 0
        for turn in range(400):
            if all(o == PER_PARTITION for o in at.values()):
                break
            fetched = await source.fetch(500, 200)
            for p, (offsets, values) in fetched.items():
                assert p != 1 or turn >= 20, "a paused partition was fetched"
                assert offsets == list(range(at[p], at[p] + len(offsets)))  # exactly where it stands
                assert values == [value(p, o) for o in offsets]
                at[p] = offsets[-1] + 1
                seen += len(offsets)
            if turn == 19:
                source.resume(tps[1])
            if turn % 5 == 2:  # a rewind (abandon) or a jump ahead (reclaim), queue full or not
                p = rng.choice(partitions)
                at[p] = rng.randrange(0, PER_PARTITION)
                source.seek(tps[p], at[p])
        assert at == dict.fromkeys(partitions, PER_PARTITION) and seen > PER_PARTITION
        assert source.highwater(tps[0]) == PER_PARTITION
        source.revoke({tps[0]})
        source.seek(tps[1], 0)
        for _ in range(10):
            fetched = await source.fetch(5000, 200)
            assert 0 not in fetched  # revoked: nothing more of it
        with pytest.raises(Exception, match="not assigned"):
            source.seek(tps[0], 0)
    finally:
        await source.close()
        await group.stop()


def test_records_continue_each_partition_through_seeks_pauses_and_revocations(topics: Settings) -> None:
    asyncio.run(read_through_seeks(topics))
