"""The aggregation state's changelog: a compacted Kafka topic co-partitioned with ``events``.

This is the Faust-table protocol, applied to the plain consumer of ``pipeline.py`` (see its
docstring for why the stream does not use Faust agents and tables directly): partition
``p`` of ``<app id>-state-changelog`` holds the entries of ``events`` partition ``p``;
entries changed by a cut are produced (acks=all) *before* that cut's offsets are
committed; a worker that is assigned ``p`` rebuilds the state by reading changelog
partition ``p`` from the start. State may thus be ahead of the committed offset, never
behind it, and the offset tags of ``fold.py`` make the replay of the gap exact.
A cut's messageIds and distinct-user marks go in one compact record (``cutrecord.py``,
chunked under 1 MB), the assignments it set in another (``persist.py``); a record is deleted
with tombstones once everything in it is older than its window (the dedup window, the
assignment window), so compaction bounds the topic.
"""

from __future__ import annotations

import logging

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from eventpipe.kafka_admin import replication_configs
from eventpipe.settings import Settings
from eventpipe.stream.cutrecord import BadCutRecord
from eventpipe.stream.fold import PartitionState
from eventpipe.stream.marks import assignment_horizon, horizon
from eventpipe.stream.persist import Key

Record = tuple[Key, bytes | None]  # a changelog record: its key (JSON-encoded when sent), its value

log = logging.getLogger("eventpipe.stream.changelog")


def changelog_topic(settings: Settings) -> str:
    return f"{settings.stream_app_id}-state-changelog"


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

    async def restore(self, starts: dict[int, int]) -> dict[int, PartitionState]:
        """The state of each partition in ``starts`` (partition -> the offset folding resumes
        from), rebuilt from its changelog partition and pruned to the dedup window."""
        partitions = sorted(starts)
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
                    state, start = states[tp.partition], starts[tp.partition]
                    for message in messages:
                        try:
                            state.restore(tuple(orjson.loads(message.key)), message.value, start)
                        except (BadCutRecord, orjson.JSONDecodeError, ValueError) as exc:
                            # not ours or damaged: the state misses it (streamed counts may then
                            # count a duplicate; the nightly reprocess is final), never a crash loop
                            log.error(
                                "changelog record skipped",
                                extra={
                                    "partition": tp.partition,
                                    "offset": message.offset,
                                    "error": repr(exc),
                                },
                            )
                    records += len(messages)
                for tp in list(pending):
                    if await consumer.position(tp) >= ends[tp]:
                        pending.discard(tp)
            for state in states.values():
                if state.high_received:
                    state.prune(horizon(state.high_received, self.settings.dedup_window_hours))
                    days = self.settings.assignment_window_days
                    state.prune_assignments(assignment_horizon(state.high_received, days))
            log.info("state restored", extra={"partitions": partitions, "records": records})
        finally:
            await consumer.stop()
        return states

    async def flush(self, partition: int, state: PartitionState, records: list[Record]) -> int:
        """Produce the changelog records of a cut (``PartitionState.cut_records``, which the
        writer computes while the fence's round trips run) and wait until the broker has them
        all; how many records."""
        futures = []
        batch = self.producer.create_batch()
        for key, value in records:
            k = orjson.dumps(key)
            if batch.append(key=k, value=value, timestamp=None) is None:
                futures.append(await self.producer.send_batch(batch, self.topic, partition=partition))
                batch = self.producer.create_batch()
                batch.append(key=k, value=value, timestamp=None)
        if batch.record_count():
            futures.append(await self.producer.send_batch(batch, self.topic, partition=partition))
        for future in futures:
            await future  # a failure leaves the assignments and tombstones queued for the retry
        state.written(records)
        return len(records)
