"""The stream bench's topic fill (librdkafka since issue 16's longer run) puts every bench
event on the partition aiokafka's default partitioner (Java's murmur2) picks for its key, in
the order produced, so the worker and the ceiling read the same per-partition data as with
the aiokafka fill before it. Real Kafka; the oracle is aiokafka's own partitioner."""

from __future__ import annotations

from collections import defaultdict

from aiokafka.partitioner import DefaultPartitioner
from kafka import KafkaConsumer, TopicPartition

from bench.stream import _fill, _values
from eventpipe.settings import Settings


def test_the_fill_partitions_by_murmur2_and_keeps_produce_order(topics: Settings) -> None:
    values = _values(3_000)
    _fill(topics, values)

    partitions = list(range(topics.events_partitions))
    pick = DefaultPartitioner()
    expected: dict[int, list[bytes]] = defaultdict(list)
    for key, value in values:
        expected[pick(key, partitions, partitions)].append(value)

    consumer = KafkaConsumer(bootstrap_servers=topics.kafka_bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topics.events_topic, p) for p in partitions]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        got: dict[int, list[bytes]] = defaultdict(list)
        for _ in range(200):  # bounded: 3,000 small records arrive in a few polls
            for tp, records in consumer.poll(timeout_ms=200).items():
                got[tp.partition].extend(r.value for r in records)
            if sum(map(len, got.values())) >= len(values):
                break
    finally:
        consumer.close()

    assert len(expected) > 1  # the bench's users spread over the partitions
    assert {p: got[p] for p in expected} == dict(expected)
    assert sum(map(len, got.values())) == len(values)
