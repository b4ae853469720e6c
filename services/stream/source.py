"""Where the pipeline's records come from: a port (``RecordSource``) and its two adapters.

The group consumer (aiokafka) owns membership, the rebalance listener, committed offsets and
the generation-checked commits (``fencing.py``); the records may come from elsewhere. The
pipeline tells its source which partitions it reads and from where -- ``assign`` on
adoption, ``revoke``, ``seek`` on every rewind, abandon or reclaim, ``pause``/``resume`` for
a fenced partition -- and ``fetch`` hands back, per partition, the offsets and values that
follow, in offset order.

``LibrdkafkaRecords`` (the worker's default): a confluent-kafka consumer used with
``incremental_assign`` only (no group, no commits). librdkafka fetches in its own threads,
so the loop thread only takes messages out (1.0 vs 2.46 CPU-us/event for aiokafka's
``getmany`` plus the record lists, docs/stream.md "Records from librdkafka"). The group
consumer keeps its partitions paused and fetches nothing, but is still polled with
``getmany(timeout_ms=0)`` on every fetch: aiokafka leaves the group when it is not polled for
``max_poll_interval_ms``, and that poll is where a rebalance in progress holds the loop.
``GroupRecords``: the group consumer's own records (tests drive the pipeline with it).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any, Protocol, cast

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError
from confluent_kafka import Consumer, KafkaException, Message
from confluent_kafka import KafkaError as LibrdkafkaError
from confluent_kafka import TopicPartition as Partition

from eventpipe.settings import Settings

Run = tuple[list[int], list[Any]]  # one partition's offsets and values (bytes, or None)

log = logging.getLogger("eventpipe.stream.source")
# Consumer errors that stop the fetch (raised out of ``fetch``, as aiokafka's fetch raised): the
# topic or partition gone or not authorized (the partition would stay silently unread), besides
# any error at a record's offset (``runs``). Others (a broker down, a timeout) librdkafka retries.
STOPPING_CODES = frozenset(
    {
        LibrdkafkaError.TOPIC_AUTHORIZATION_FAILED,
        LibrdkafkaError.UNKNOWN_TOPIC_OR_PART,
        LibrdkafkaError._UNKNOWN_TOPIC,
        LibrdkafkaError._UNKNOWN_PARTITION,
    }
)


class RecordSource(Protocol):
    def assign(self, tp: TopicPartition, offset: int) -> None: ...
    def revoke(self, tps: set[TopicPartition]) -> None: ...
    def seek(self, tp: TopicPartition, offset: int) -> None: ...
    def pause(self, tp: TopicPartition) -> None: ...
    def resume(self, tp: TopicPartition) -> None: ...
    async def fetch(self, max_records: int, timeout_ms: int) -> dict[int, Run]: ...
    def highwater(self, tp: TopicPartition) -> int | None: ...
    async def close(self) -> None: ...


class GroupRecords:
    """The group consumer's own fetched records: it positions itself from the committed
    offsets on assignment (the pipeline's ``_in_sequence`` rewinds where it differs)."""

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer

    def assign(self, tp: TopicPartition, offset: int) -> None:
        pass

    def revoke(self, tps: set[TopicPartition]) -> None:
        pass

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.consumer.seek(tp, offset)

    def pause(self, tp: TopicPartition) -> None:
        self.consumer.pause(tp)

    def resume(self, tp: TopicPartition) -> None:
        self.consumer.resume(tp)

    async def fetch(self, max_records: int, timeout_ms: int) -> dict[int, Run]:
        fetched = await self.consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        return {
            tp.partition: ([r.offset for r in records], [r.value for r in records])
            for tp, records in fetched.items()
        }

    def highwater(self, tp: TopicPartition) -> int | None:
        high: int | None = self.consumer.highwater(tp)
        return high

    async def close(self) -> None:
        pass


def librdkafka_config(settings: Settings) -> dict[str, Any]:
    """The records consumer's configuration: as the group consumer fetched (fetch sizes,
    read_uncommitted, earliest on an offset out of range), no commits; librdkafka's queue as
    measured (``Settings.stream_fetch_*``)."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": f"{settings.stream_app_id}-records",  # never joined: assign() only
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_uncommitted",  # aiokafka's default
        "max.partition.fetch.bytes": 4 * 1024 * 1024,
        "fetch.max.bytes": 32 * 1024 * 1024,
        "queued.min.messages": settings.stream_fetch_queued_min_messages,
        "fetch.queue.backoff.ms": settings.stream_fetch_queue_backoff_ms,
        "queued.max.messages.kbytes": settings.stream_fetch_queued_max_kbytes,
        "enable.partition.eof": False,
    }


class LibrdkafkaRecords:
    """Records from a confluent-kafka consumer assigned exactly the partitions the pipeline
    reads, at the offsets it reads from; the group consumer paused and polled (module doc).

    A seek is an unassign and an assign at the offset: librdkafka refuses ``seek`` on a
    partition whose fetcher has not started yet, and either way drops what it had queued for
    the partition, so nothing fetched before a seek is handed out after it. ``consume`` runs
    on the loop without waiting; only when nothing is queued does it wait for one message, in
    a thread (it releases the GIL), then take what else is queued on the loop. The pipeline's
    own seeks happen on the loop between fetches; a rebalance callback may unassign and assign
    during the wait: librdkafka's version barrier drops the partition's older messages from a
    batch still being served, a batch served before is checked by the pipeline (its
    ``seeks`` snapshot and ``_in_sequence``). librdkafka's errors in assign, seek, pause and
    resume are raised as aiokafka's ``KafkaError``, which the pipeline's callers handle."""

    def __init__(self, settings: Settings, group: AIOKafkaConsumer) -> None:
        self.topic = settings.events_topic
        self.group = group
        self.consumer = Consumer(librdkafka_config(settings))
        self.assigned: set[int] = set()
        self.paused: set[int] = set()
        self.waiting: asyncio.Future[list[Message]] | None = None

    def _partition(self, tp: TopicPartition, offset: int = -1001) -> list[Partition]:
        return [Partition(self.topic, tp.partition, offset)]

    def assign(self, tp: TopicPartition, offset: int) -> None:
        """Read ``tp`` from ``offset``, not paused (a new assignment, as aiokafka's)."""
        self.group.pause(tp)  # the group consumer fetches nothing (membership only)
        self.paused.discard(tp.partition)
        self._place(tp, offset)

    def _place(self, tp: TopicPartition, offset: int) -> None:
        if tp.partition in self.assigned:
            self.assigned.discard(tp.partition)  # a call failing below leaves it not ours
            _call(self.consumer.incremental_unassign, self._partition(tp))
        _call(self.consumer.incremental_assign, self._partition(tp, offset))
        self.assigned.add(tp.partition)
        # librdkafka may keep a partition's pause across a reassignment: set it as it should be
        _call(
            self.consumer.pause if tp.partition in self.paused else self.consumer.resume, self._partition(tp)
        )

    def revoke(self, tps: set[TopicPartition]) -> None:
        gone = [tp for tp in tps if tp.partition in self.assigned]
        if gone:
            self.assigned.difference_update(tp.partition for tp in gone)
            self.paused.difference_update(tp.partition for tp in gone)
            try:
                self.consumer.incremental_unassign([p for tp in gone for p in self._partition(tp)])
            except KafkaException as exc:  # the revocation goes on: their runs are dropped as not ours
                log.warning(
                    "unassign failed",
                    extra={"partitions": sorted(tp.partition for tp in gone), "error": str(exc)},
                )

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Read ``tp`` from ``offset`` next; a paused partition stays paused (as aiokafka's seek)."""
        if tp.partition not in self.assigned:  # as aiokafka's seek: callers take it as "not ours"
            raise IllegalStateError(f"partition {tp.partition} is not assigned")
        self._place(tp, offset)

    def pause(self, tp: TopicPartition) -> None:
        if tp.partition in self.assigned:
            self.paused.add(tp.partition)
            _call(self.consumer.pause, self._partition(tp))

    def resume(self, tp: TopicPartition) -> None:
        if tp.partition in self.assigned:
            self.paused.discard(tp.partition)
            _call(self.consumer.resume, self._partition(tp))

    async def fetch(self, max_records: int, timeout_ms: int) -> dict[int, Run]:
        await self.group.getmany(timeout_ms=0)  # membership; its partitions are paused
        messages = self.consumer.consume(max_records, 0)
        if not messages and timeout_ms > 0:
            # one message ends the wait (consume(n, t) waits for n or t), the rest is queued
            loop = asyncio.get_running_loop()
            self.waiting = loop.run_in_executor(None, self.consumer.consume, 1, timeout_ms / 1000)
            messages = await asyncio.shield(self.waiting)  # close() waits for it
            self.waiting = None
            if messages and max_records > 1:
                messages += self.consumer.consume(max_records - 1, 0)
        return runs(messages)

    def highwater(self, tp: TopicPartition) -> int | None:
        try:
            _low, high = self.consumer.get_watermark_offsets(self._partition(tp)[0], cached=True)
        except KafkaException:
            return None
        return high if high >= 0 else None

    async def close(self) -> None:
        if self.waiting is not None:
            await asyncio.gather(self.waiting, return_exceptions=True)
        await asyncio.to_thread(self.consumer.close)


def _call(operation: Callable[[list[Partition]], object], partitions: list[Partition]) -> None:
    try:
        operation(partitions)
    except KafkaException as exc:
        raise KafkaError(f"partition {partitions[0].partition}: {exc}") from exc


def runs(messages: list[Message]) -> dict[int, Run]:
    """Per partition, the offsets and values of ``messages`` in the order consumed (a
    partition's messages in offset order). Error events (librdkafka reports them as
    messages) carry no record: raised when fatal, at a record's offset (records librdkafka
    could not read, e.g. a bad CRC or compression: it skips them, which would leave a gap) or
    in ``STOPPING_CODES``; else logged and skipped (librdkafka retries those itself)."""
    errors = list(map(Message.error, messages))  # as the columns below: no Python call per message
    if any(errors):
        for m, error in zip(messages, errors, strict=True):
            if error is None or error.code() == LibrdkafkaError._PARTITION_EOF:
                continue
            offset = m.offset()
            if error.fatal() or error.code() in STOPPING_CODES or (offset is not None and offset >= 0):
                raise KafkaException(error)
            log.warning("kafka consumer error", extra={"error": str(error)})
        messages = [m for m, error in zip(messages, errors, strict=True) if error is None]
    # records (not errors) always have both
    partitions = cast(list[int], list(map(Message.partition, messages)))
    offsets = cast(list[int], list(map(Message.offset, messages)))
    values = list(map(Message.value, messages))
    out: dict[int, Run] = {}
    i = 0
    for p, group in itertools.groupby(partitions):
        n = sum(1 for _ in group)
        run = out.setdefault(p, ([], []))
        run[0].extend(offsets[i : i + n])
        run[1].extend(values[i : i + n])
        i += n
    return out
