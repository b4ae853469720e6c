"""The archive + aggregate pipeline: a plain aiokafka consumer loop run as a Faust service.

Why not a Faust agent with ``take()`` and acks: PITFALLS lists manual acks that skip
offsets (#315), wrong commits around ack gaps (#312) and events skipped after a rebalance
(#216); Faust also writes table changes to the changelog partition of the *current
event*, which a batch from ``take()`` does not define. The S3 micro-batcher needs one
simple invariant -- commit offset ``L+1`` only after every object of the cut ending at ``L``
is in S3 -- so this loop owns its consumer and commits by hand. It still runs inside the
Faust app (lifecycle, signals, web server, ``/metrics``; see ``app.py``), scales out
with Kafka's group protocol like Faust agents do (several workers share the partitions and
rebalance), batches like ``stream.take()`` (``getmany``: no per-event task switch), and
keeps its keyed state in a changelog topic with Faust-table semantics (``changelog.py``).

A cut of partition ``p`` (``cuts.py``) is written in this order: raw object (its
``last-offset`` metadata records where the cut ended), aggregate deltas, rejected records,
state changelog entries, notices on ``batches``, then the offset commit. A crash anywhere
before the commit replays the cut: the worker that next owns ``p`` finds the raw object,
cuts at its recorded ``last-offset`` and rewrites the same objects (``fold.py`` makes the
re-folded deltas identical). S3 failing after bounded retries abandons the cut without a
commit and seeks back to its first offset, so it is retried, never lost.

On revocation the open cuts of the revoked partitions are dropped (their offsets are not
committed, so the new owner replays them); the lock makes a revocation wait for a cut that
is being written, so two owners never write one partition's objects at the same time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import timedelta

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import ConsumerStoppedError, KafkaError
from mode import Service

from eventpipe.errors import StorageError
from eventpipe.settings import Settings
from eventpipe.stream.batch import BadRecord, PartitionBatch, S3Object, parse_event
from eventpipe.stream.changelog import StateChangelog
from eventpipe.stream.cuts import Clock, CutPolicy, SystemClock
from eventpipe.stream.metrics import StreamMetrics
from eventpipe.stream.storage import S3Writer
from eventpipe.timeutil import format_ts, parse_ts, utcnow

log = logging.getLogger("eventpipe.stream.pipeline")


@dataclass
class Owned:
    tp: TopicPartition
    batch: PartitionBatch
    verify: bool = True  # look for objects a previous run wrote before opening a cut
    raw_exists: bool = False
    committed: int = -1
    pruned_hour: str = ""
    next_offset: int = 0  # the offset this worker must read next for this partition
    rewound: bool = False  # sought to next_offset: accept what comes (offsets may have gaps)


async def _all(*aws: Awaitable) -> list:
    """Await all concurrently; every one has finished (no write left in flight) before the
    first failure, if any, is raised."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.pipeline.revoke(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.pipeline.assign(assigned)


class Pipeline(Service):
    def __init__(self, settings: Settings, metrics: StreamMetrics, clock: Clock | None = None, **kw) -> None:
        super().__init__(**kw)
        self.settings = settings
        self.metrics = metrics
        self.clock = clock or SystemClock()
        self.parts: dict[int, Owned] = {}
        self.lock = asyncio.Lock()
        self.max_records = 5000

    async def on_start(self) -> None:
        s = self.settings
        self.s3 = S3Writer(s, self.metrics)
        self.producer = AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_batch_size=1024 * 1024,
            max_request_size=8 * 1024 * 1024,
        )
        await self.producer.start()
        partitions = await self.producer.partitions_for(s.events_topic)
        self.changelog = StateChangelog(s, self.producer)
        await self.changelog.ensure_topic(len(partitions))
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            group_id=s.stream_app_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=4 * 1024 * 1024,
            fetch_max_bytes=32 * 1024 * 1024,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=2_000,
        )
        self.consumer.subscribe([s.events_topic], listener=_Rebalance(self))
        await self.consumer.start()
        self._task = asyncio.ensure_future(self._run())

    async def on_stop(self) -> None:
        task = getattr(self, "_task", None)
        if task is not None:
            async with self.lock:  # let a cut being written finish (and commit) first
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.consumer.stop()  # leaves the group: the partitions move on at once
        await self.producer.stop()

    # ------------------------------------------------------------------ rebalance
    async def revoke(self, revoked: set[TopicPartition]) -> None:
        async with self.lock:
            for tp in revoked:
                if self.parts.pop(tp.partition, None) is not None:
                    for gauge in (self.metrics.lag, self.metrics.state_entries, self.metrics.committed):
                        gauge.remove(str(tp.partition))
            log.info("partitions revoked", extra={"partitions": sorted(tp.partition for tp in revoked)})

    async def assign(self, assigned: set[TopicPartition]) -> None:
        async with self.lock:
            fresh = [tp for tp in assigned if tp.partition not in self.parts]
            states = await self.changelog.restore([tp.partition for tp in fresh])
            starts = await self._start_offsets(fresh)
            s = self.settings
            for tp in fresh:
                policy = CutPolicy(s.archive_max_events, s.archive_max_bytes, s.flush_interval_s, self.clock)
                batch = PartitionBatch(tp.partition, policy, states[tp.partition])
                self.parts[tp.partition] = Owned(tp, batch, next_offset=starts[tp])
            log.info("partitions assigned", extra={"partitions": sorted(tp.partition for tp in assigned)})

    async def _start_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Where each newly assigned partition starts: the committed offset, else the log start."""
        starts = {}
        for tp in tps:
            committed = await self.consumer.committed(tp)
            starts[tp] = committed if committed is not None else -1
        missing = [tp for tp, offset in starts.items() if offset < 0]
        if missing:
            starts.update(await self.consumer.beginning_offsets(missing))
        return starts

    # ------------------------------------------------------------------ the loop
    async def _run(self) -> None:
        while not self.should_stop:
            try:
                fetched = await self.consumer.getmany(timeout_ms=200, max_records=self.max_records)
            except ConsumerStoppedError:
                return
            async with self.lock:
                for tp, records in fetched.items():
                    part = self.parts.get(tp.partition)
                    records = self._in_sequence(part, records) if part is not None else []
                    if part is not None and records:
                        await self._consume(part, records)
                due = [part for part in self.parts.values() if part.batch.policy.expired()]
                await _all(*(self._cut(part, "time") for part in due))
                self._observe()

    def _in_sequence(self, part: Owned, records: list) -> list:
        """Records that continue this partition exactly where it stands. aiokafka hands out
        a new assignment's records as soon as it is set, possibly before our assignment
        callback has run (those were skipped): then read again from ``next_offset``."""
        first = records[0].offset
        if first == part.next_offset or (part.rewound and first > part.next_offset):
            part.rewound = False
            return records
        if first > part.next_offset:
            log.info(
                "rewinding", extra={"partition": part.tp.partition, "to": part.next_offset, "got": first}
            )
            self.consumer.seek(part.tp, part.next_offset)
            part.rewound = True
            return []
        return [r for r in records if r.offset >= part.next_offset]  # already folded: skip

    async def _consume(self, part: Owned, records: list) -> None:
        batch, events = part.batch, self.metrics.events
        for record in records:
            offset, value = record.offset, record.value
            try:
                event = parse_event(value)
            except BadRecord as exc:
                if batch.before(offset, None, 0) and not await self._cut(part, "replay"):
                    return
                events.labels("rejected").inc()
                reason = batch.add_rejected(offset, value, exc.reason, str(exc))
            else:
                size = len(value)
                cut_reason = batch.before(offset, event, size)
                if cut_reason and not await self._cut(part, cut_reason):
                    return
                if part.verify and not batch.lines and not await self._verify(part, offset, event):
                    return
                reason = batch.add_event(offset, value, event)
            part.next_offset = offset + 1
            if reason and not await self._cut(part, reason):
                return
        n = len(records)
        events.labels("processed").inc(n)

    async def _verify(self, part: Owned, offset: int, event: dict) -> bool:
        """Before opening a cut after (re)assignment or a failure: did a previous run
        already write it? Then replay it exactly (cut at its recorded last offset)."""
        key = part.batch.opening_key(offset, event)
        try:
            last = await self.s3.recorded_last_offset(key) if key else None
        except StorageError as exc:
            self._abandon(part, exc, offset)
            return False
        if last is None:
            part.verify = False  # objects are written in offset order: none exist beyond this
        else:
            part.batch.policy.force(last)
            part.raw_exists = True
            log.info("replaying a written cut", extra={"partition": part.tp.partition, "first": offset})
        return True

    async def _cut(self, part: Owned, reason: str) -> bool:
        batch, tp = part.batch, part.tp
        if not batch.policy.is_open:
            return True
        started = time.monotonic()
        last = batch.policy.last_offset
        objects = batch.objects(part.raw_exists, utcnow())
        try:
            # The raw object goes first and alone: finding it is how a replay knows the cut
            # was written (and where it ended), so no other object of a cut may exist without it.
            raw = [o for o in objects if o.table == "events"]
            if raw and not part.raw_exists:
                await self.s3.put(raw[0])
            rest = [self.s3.put(o) for o in objects if o.table != "events"]
            await _all(*rest, self.changelog.flush(tp.partition, batch.state))
            await self._notify(objects, part)
            await self.consumer.commit({tp: last + 1})
        except (StorageError, KafkaError) as exc:
            self._abandon(part, exc, batch.policy.first_offset)
            return False
        part.committed = last + 1
        for obj in objects:
            self.metrics.batches.labels(obj.table).inc()
        self.metrics.cuts.labels(reason).inc()
        self.metrics.events.labels("duplicate").inc(batch.duplicates)
        self.metrics.flush_seconds.observe(time.monotonic() - started)
        batch.reset()
        part.raw_exists = False
        self._maybe_prune(part)
        return True

    async def _notify(self, objects: list[S3Object], part: Owned) -> None:
        """Batch notices (docs/contracts.md section 4): hints for the loader, after the upload."""
        written_at = format_ts(utcnow())
        first, last = part.batch.first_archived, part.batch.policy.last_offset
        futures = []
        for obj in objects:
            if obj.table == "rejected":
                continue
            key = self.settings.s3_prefix + obj.key
            notice = {
                "key": key,
                "table": obj.table,
                "rows": obj.rows,
                "partition": part.tp.partition,
                "first_offset": first,
                "last_offset": last,
                "written_at": written_at,
            }
            futures.append(
                await self.producer.send(self.settings.batches_topic, orjson.dumps(notice), key=key.encode())
            )
        for future in futures:
            await future

    def _abandon(self, part: Owned, exc: BaseException, offset: int) -> None:
        """Give the open cut up (nothing committed) and read again from its first offset
        (``offset`` when no cut is open): the retry is a replay, so its objects and deltas
        come out the same."""
        first = part.batch.policy.first_offset if part.batch.policy.is_open else offset
        self.metrics.flush_failures.inc()
        log.error(
            "cut abandoned, will retry from its first offset",
            extra={"partition": part.tp.partition, "first": first, "error": f"{type(exc).__name__}: {exc}"},
        )
        part.batch.reset()
        part.verify, part.raw_exists = True, False
        if first >= 0:
            part.next_offset, part.rewound = first, True
            try:
                self.consumer.seek(part.tp, first)
            except (KafkaError, AssertionError) as seek_exc:  # no longer assigned: the next owner replays
                log.warning("seek failed", extra={"partition": part.tp.partition, "error": str(seek_exc)})

    def _maybe_prune(self, part: Owned) -> None:
        """Drop state older than the dedup window, at most once per hour of data time."""
        state = part.batch.state
        hour = state.high_received[:13]
        if not hour or hour == part.pruned_hour:
            return
        part.pruned_hour = hour
        window = timedelta(hours=self.settings.dedup_window_hours)
        horizon = format_ts(parse_ts(state.high_received) - window)
        dropped = state.prune(horizon)
        if dropped:
            log.info("state pruned", extra={"partition": part.tp.partition, "entries": dropped})

    def _observe(self) -> None:
        m = self.metrics
        for p, part in self.parts.items():
            label = str(p)
            m.state_entries.labels(label).set(part.batch.state.size)
            high = self.consumer.highwater(part.tp)
            if part.committed >= 0:
                m.committed.labels(label).set(part.committed)
            if high is not None and part.committed >= 0:
                m.lag.labels(label).set(max(high - part.committed, 0))
