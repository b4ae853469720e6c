"""The stream worker's adapters, created on the worker's event loop (aiokafka clients bind
to the running loop): the composition root (``eventpipe.bootstrap``) hands the pipeline a
``connect`` that makes them, tests hand it their own ``StreamClients``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from eventpipe.settings import Settings
from eventpipe.stream.changelog import StateChangelog
from eventpipe.stream.metrics import StreamMetrics
from eventpipe.stream.source import GroupRecords, LibrdkafkaRecords, RecordSource
from eventpipe.stream.storage import S3Writer

NewProducer = Callable[[], Awaitable[AIOKafkaProducer]]


@dataclass
class StreamClients:
    consumer: AIOKafkaConsumer  # not started: the pipeline subscribes it with its rebalance listener
    producer: AIOKafkaProducer  # started: batch notices and the state changelog
    storage: S3Writer
    changelog: StateChangelog
    # Makes a started producer like ``producer``: an idempotent producer whose sequence numbers
    # fell out of step with the broker (``OutOfOrderSequenceNumber`` after an outage; aiokafka
    # never resets them) fails every later send to that partition, so the writer replaces it.
    new_producer: NewProducer | None = None
    # Where the pipeline's records come from (``source.py``); None: ``consumer``'s own fetches.
    records: RecordSource | None = None

    def record_source(self) -> RecordSource:
        if self.records is None:
            self.records = GroupRecords(self.consumer)
        return self.records

    def use_producer(self, producer: AIOKafkaProducer) -> AIOKafkaProducer:
        """Make ``producer`` the one the notices and the changelog send with; the old one."""
        old, self.producer = self.producer, producer
        self.changelog.producer = producer
        return old


@dataclass
class DeadLetterClients:
    consumer: AIOKafkaConsumer  # subscribed to the dead-letter topic, not started
    storage: S3Writer


Connect = Callable[[], Awaitable[StreamClients]]
ConnectLetters = Callable[[], Awaitable[DeadLetterClients]]


def stream_connect(settings: Settings, metrics: StreamMetrics, *, conditional_put: bool = False) -> Connect:
    """The real clients: Kafka (acks=all, idempotent producer; manual commits), S3 (PUTs
    with ``If-None-Match: *`` when ``conditional_put``), the state changelog."""

    async def new_producer() -> AIOKafkaProducer:
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=1024 * 1024,
            max_request_size=8 * 1024 * 1024,
        )
        await producer.start()
        return producer

    async def connect() -> StreamClients:
        producer = await new_producer()
        partitions = await producer.partitions_for(settings.events_topic)
        changelog = StateChangelog(settings, producer)
        await changelog.ensure_topic(len(partitions))
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=settings.stream_app_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=32 * 1024 * 1024,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=2_000,
        )
        storage = S3Writer(settings, metrics, conditional=conditional_put)
        records = record_source(settings, consumer)
        return StreamClients(consumer, producer, storage, changelog, new_producer, records)

    return connect


def record_source(settings: Settings, consumer: AIOKafkaConsumer) -> RecordSource:
    """The records of ``settings.stream_record_source``: librdkafka's (the group consumer
    then keeps membership only) or the group consumer's own."""
    if settings.stream_record_source == "librdkafka":
        return LibrdkafkaRecords(settings, consumer)
    return GroupRecords(consumer)


def deadletter_connect(settings: Settings, metrics: StreamMetrics) -> ConnectLetters:
    """The dead-letter archiver's real clients: a consumer of ``deadletter_topic`` in group
    ``<stream_app_id>-deadletters`` (manual commits) and its S3 writer."""

    async def connect() -> DeadLetterClients:
        consumer = AIOKafkaConsumer(
            settings.deadletter_topic,
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=f"{settings.stream_app_id}-deadletters",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=10_000,
            heartbeat_interval_ms=2_000,
        )
        return DeadLetterClients(consumer, S3Writer(settings, metrics))

    return connect
