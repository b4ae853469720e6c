"""The confluent publisher when librdkafka's local queue is full: the request fails with
``PublishError`` (the collector's 503) at once instead of waiting, and the producer keeps
working. A real producer against the real broker; only its queue is made tiny."""

from __future__ import annotations

import asyncio

import pytest
from kafka import KafkaConsumer, TopicPartition

from eventpipe.errors import PublishError
from eventpipe.ingest.confluent import ConfluentPublisher

QUEUE = 10  # records librdkafka may hold at once (queue.buffering.max.messages)


def records(topic: str, n: int, tag: str) -> list[tuple[str, bytes, bytes]]:
    return [(topic, f"user-{i}".encode(), f'{{"tag":"{tag}","i":{i}}}'.encode()) for i in range(n)]


def stored(bootstrap: str, topic: str) -> list[bytes]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, consumer_timeout_ms=3000)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning()
        return [message.value for message in consumer]
    finally:
        consumer.close()


def test_a_full_local_queue_fails_the_request_and_the_producer_recovers(topics):
    topic = topics.events_topic
    publisher = ConfluentPublisher(topics, overrides={"queue.buffering.max.messages": QUEUE})

    async def scenario() -> None:
        with pytest.raises(PublishError, match="queue full"):
            await publisher.publish(records(topic, 5 * QUEUE, "too-many"))
        # whatever did enter the queue drains; then a request that fits is acknowledged
        for _ in range(100):
            if len(publisher._producer) == 0:
                break
            await asyncio.sleep(0.1)
        await publisher.publish(records(topic, QUEUE, "fits"))

    try:
        asyncio.run(scenario())
    finally:
        publisher.close()
    values = stored(topics.kafka_bootstrap, topic)
    fits = [v for v in values if b'"fits"' in v]
    too_many = [v for v in values if b'"too-many"' in v]
    assert sorted(fits) == sorted(value for _, _, value in records(topic, QUEUE, "fits"))
    assert len(too_many) < 5 * QUEUE  # the rest never entered the queue: the 503 was not a lie
