"""The aggregation state's changelog: a compacted Kafka topic co-partitioned with ``events``.

This is the Faust-table protocol, applied to the plain consumer of ``pipeline.py`` (see its
docstring for why the stream does not use Faust agents and tables directly): partition
``p`` of ``<app id>-state-changelog`` holds the entries of ``events`` partition ``p``;
entries changed by a cut are produced (acks=all) *before* that cut's offsets are
committed; a worker that is assigned ``p`` rebuilds the state by reading changelog
partition ``p`` from the start. State may thus be ahead of the committed offset, never
behind it, and the offset tags of ``fold.py`` make the replay of the gap exact.
Expired entries are deleted with tombstones, so compaction bounds the topic.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from eventpipe.kafka_admin import replication_configs
from eventpipe.settings import Settings
from eventpipe.stream.fold import PartitionState

log = logging.getLogger("eventpipe.stream.changelog")


def changelog_topic(settings: Settings) -> str:
    return f"{settings.stream_app_id}-state-changelog"


def encode(key: tuple[str, ...], value: Any) -> tuple[bytes, bytes | None]:
    return orjson.dumps(key), None if value is None else orjson.dumps(value)


class StateChangelog:
    def __init__(self, settings: Settings, producer: AIOKafkaProducer) -> None:
        self.settings = settings
        self.topic = changelog_topic(settings)
        self.producer = producer

    async def ensure_topic(self, partitions: int) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
        await admin.start()
        try:
            configs = {"cleanup.policy": "compact", **replication_configs(self.settings)}
            rf = self.settings.kafka_replication_factor
            spec = NewTopic(self.topic, partitions, rf, topic_configs=configs)
            await admin.create_topics([spec])
            log.info("created the state changelog", extra={"topic": self.topic, "partitions": partitions})
        except TopicAlreadyExistsError:
            pass
        finally:
            await admin.close()

    async def restore(self, partitions: list[int]) -> dict[int, PartitionState]:
        """The state of each partition, rebuilt from its changelog partition."""
        states = {p: PartitionState() for p in partitions}
        if not partitions:
            return states
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_bytes=16 * 1024 * 1024,
        )
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic, p) for p in partitions]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            pending = {tp for tp in tps if ends[tp] > 0}
            records = 0
            while pending:
                batch = await consumer.getmany(*pending, timeout_ms=1000, max_records=10_000)
                for tp, messages in batch.items():
                    state = states[tp.partition]
                    for message in messages:
                        value = None if message.value is None else orjson.loads(message.value)
                        state.restore(tuple(orjson.loads(message.key)), value)
                    records += len(messages)
                for tp in list(pending):
                    if await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
            for state in states.values():
                state.changed.clear()
            log.info("state restored", extra={"partitions": partitions, "records": records})
        finally:
            await consumer.stop()
        return states

    async def flush(self, partition: int, state: PartitionState) -> int:
        """Produce every changed entry of ``partition`` and wait until the broker has them."""
        entries = state.drain()
        futures = []
        batch = self.producer.create_batch()
        for key, value in entries:
            k, v = encode(key, value)
            if batch.append(key=k, value=v, timestamp=None) is None:
                futures.append(await self.producer.send_batch(batch, self.topic, partition=partition))
                batch = self.producer.create_batch()
                batch.append(key=k, value=v, timestamp=None)
        if batch.record_count():
            futures.append(await self.producer.send_batch(batch, self.topic, partition=partition))
        try:
            for future in futures:
                await future
        except Exception:
            # not persisted: keep the entries marked so the next flush sends them again
            state.changed.update(key for key, _ in entries)
            raise
        return len(entries)
