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

A cut of partition ``p`` (``cuts.py``) is written in this order: fence (below), raw object
(its ``last-offset`` metadata records where the cut ended), aggregate deltas and rejected
records with the state changelog entries, the offset commit, then notices on ``batches``.
A crash anywhere before the commit replays the cut: the worker that next owns ``p`` finds
the raw object, cuts at its recorded ``last-offset`` and writes what is missing (``fold.py``
makes the re-folded deltas identical). S3 failing after bounded retries abandons the cut
without a commit and seeks back to its first offset, so it is retried, never lost.

Fencing (docs/contracts.md section 5: an object never changes once written). A worker can
lose its partitions without knowing it yet -- paused (SIGSTOP, GC, VM freeze) past the
session timeout, the group moves ``p`` to another worker, which replays from the committed
offset and writes *its* cut at the same deterministic key. Before writing anything of a cut,
``_fence`` therefore checks (1) the group's committed offset for ``p`` (beyond this cut's
first offset: someone else owns ``p``), (2) the membership, on the broker: it commits the
committed offset again, unchanged, which the coordinator refuses (``CommitFailedError``)
unless this worker is a member of the current generation -- and within one generation only
one member owns ``p``; (3) the target keys, by HEAD: an existing raw or aggregate object
whose ``last-offset`` differs from this cut's is never overwritten (the cut is abandoned
and replayed from its first offset, which then follows the recorded cut); one with the
same ``last-offset`` has the same content and is not written again. A fenced worker drops
the cut without writing state, notices or a commit and pauses ``p`` until the rebalance
takes it away (or, failing that, re-reads it from the committed offset and restored state).
Notices follow the commit, so a cut whose commit fails announces nothing.
What remains: a worker that passes the checks and is then paused for longer than the
session timeout *between* its HEAD and its PUT could still replace an object the new owner
wrote meanwhile (or its changelog entries). ``s3_conditional_put`` (``If-None-Match: *``,
AWS S3) closes that window for the objects; s3rver has no conditional PUT.

On revocation the open cuts of the revoked partitions are dropped (their offsets are not
committed, so the new owner replays them); the lock makes a revocation wait for a cut that
is being written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import timedelta

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, ConsumerStoppedError, IllegalStateError, KafkaError
from mode import Service

from eventpipe.errors import StorageError
from eventpipe.settings import Settings
from eventpipe.stream.batch import BadRecord, PartitionBatch, S3Object, parse_event
from eventpipe.stream.changelog import StateChangelog
from eventpipe.stream.cuts import Clock, CutPolicy, SystemClock
from eventpipe.stream.metrics import StreamMetrics
from eventpipe.stream.storage import UNRECORDED, S3Writer
from eventpipe.timeutil import format_ts, parse_ts, utcnow

log = logging.getLogger("eventpipe.stream.pipeline")
# How long a fenced partition waits for the rebalance that takes it away before it is read
# again from the committed offset (a safety net: a failed membership check means a rebalance).
FENCE_HOLD_S = 30.0


class Fenced(Exception):
    """Another worker owns the partition (or may): this worker must not write for it."""


class Diverged(Exception):
    """An object of the cut exists with another ``last-offset``: never overwrite it."""


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
    fenced_at: float | None = None  # monotonic time the partition was found owned elsewhere


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
            held = {p for p, part in self.parts.items() if part.fenced_at is None}
            fresh = [tp for tp in assigned if tp.partition not in held]  # a fenced one starts over
            await self._adopt(fresh)
            log.info("partitions assigned", extra={"partitions": sorted(tp.partition for tp in assigned)})

    async def _adopt(self, tps: list[TopicPartition]) -> None:
        """Take partitions over: state restored from the changelog, reading from the committed offset."""
        states = await self.changelog.restore([tp.partition for tp in tps])
        starts = await self._start_offsets(tps)
        s = self.settings
        for tp in tps:
            policy = CutPolicy(s.archive_max_events, s.archive_max_bytes, s.flush_interval_s, self.clock)
            batch = PartitionBatch(tp.partition, policy, states[tp.partition])
            self.parts[tp.partition] = Owned(tp, batch, next_offset=starts[tp])

    def owned(self) -> list[int]:
        """The partitions this worker owns and works on (fenced ones excluded)."""
        return sorted(p for p, part in self.parts.items() if part.fenced_at is None)

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
                    if part is None or part.fenced_at is not None:
                        continue  # not ours (any more): fetched before a revocation or a fence
                    records = self._in_sequence(part, records)
                    if records:
                        await self._consume(part, records)
                due = [part for part in self.parts.values() if part.batch.policy.expired()]
                await _all(*(self._cut(part, "time") for part in due))
                await self._reclaim_stale_fences()
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
        first, last = batch.policy.first_offset, batch.policy.last_offset
        objects = batch.objects(part.raw_exists, utcnow())
        try:
            await self._fence(part, first)
            todo = await self._unwritten(part, objects, last)
            # The raw object goes first and alone: finding it is how a replay knows the cut
            # was written (and where it ended), so no other object of a cut may exist without it.
            raw = [o for o in todo if o.table == "events"]
            if raw:
                await self.s3.put(raw[0], exclusive=True)
            # rejected/ keys carry the write date (a replay on another day makes a second
            # object) and are never loaded: written without the key fence
            rest = [self.s3.put(o, exclusive=o.table != "rejected") for o in todo if o.table != "events"]
            await _all(*rest, self.changelog.flush(tp.partition, batch.state))
            await self.consumer.commit({tp: last + 1})
        except (Fenced, CommitFailedError, IllegalStateError) as exc:  # not (or no longer) ours
            self._fence_off(part, exc)
            return False
        except (Diverged, StorageError, KafkaError) as exc:  # incl. ObjectExists (a conditional PUT lost)
            self._abandon(part, exc, first)
            return False
        part.committed = last + 1
        try:
            await self._notify(objects, part)
        except KafkaError as exc:  # committed already; the loader also lists S3 (contracts section 4)
            log.warning("batch notices not sent", extra={"partition": tp.partition, "error": repr(exc)})
        for obj in todo:  # objects a previous run wrote (replay) are not written again
            self.metrics.batches.labels(obj.table).inc()
        self.metrics.cuts.labels(reason).inc()
        self.metrics.events.labels("duplicate").inc(batch.duplicates)
        self.metrics.flush_seconds.observe(time.monotonic() - started)
        batch.reset()
        part.raw_exists = False
        self._maybe_prune(part)
        return True

    async def _fence(self, part: Owned, first: int) -> None:
        """``Fenced`` unless this worker still owns the partition (module docstring)."""
        tp = part.tp
        committed = await self.consumer.committed(tp)
        if committed is not None and committed > first:
            raise Fenced(f"the group committed {committed}, beyond this cut's first offset {first}")
        # Unchanged offset, but the coordinator checks generation and member id: a worker
        # that was expelled (or is behind a rebalance) gets CommitFailedError here.
        await self.consumer.commit({tp: first if committed is None else committed})

    async def _unwritten(self, part: Owned, objects: list[S3Object], last: int) -> list[S3Object]:
        """The cut's objects still to write. ``Diverged`` if one exists that another cut wrote
        (other ``last-offset``); one with this cut's ``last-offset`` has this content: skipped.
        An aggregate object without metadata (a torn write of a killed writer) is written again:
        the raw object, which passed this check, fixes the cut, hence the content."""
        fenced = [o for o in objects if o.table != "rejected"]
        recorded = await _all(
            *(self.s3.recorded_last_offset(o.key, torn_ok=o.table != "events") for o in fenced)
        )
        found = {o.key: rec for o, rec in zip(fenced, recorded, strict=True) if rec not in (None, UNRECORDED)}
        for key, rec in found.items():
            if rec != last:
                raise Diverged(f"{key} exists with last-offset {rec}, this cut ends at {last}")
        if part.raw_exists and any(o.table == "events" and o.key not in found for o in fenced):
            raise Diverged("the raw object this replay follows is gone")
        return [o for o in objects if o.key not in found]

    def _fence_off(self, part: Owned, exc: BaseException) -> None:
        """This worker may no longer own the partition: drop the cut without writing state,
        notices or a commit, and stop reading it until the rebalance takes it away."""
        self.metrics.fenced.inc()
        log.warning(
            "partition fenced: owned elsewhere, cut dropped, waiting for the rebalance",
            extra={
                "partition": part.tp.partition,
                "first": part.batch.policy.first_offset,
                "last": part.batch.policy.last_offset,
                "error": f"{type(exc).__name__}: {exc}",
            },
        )
        part.batch.reset()
        part.verify, part.raw_exists = True, False
        part.fenced_at = time.monotonic()
        with contextlib.suppress(KafkaError, AssertionError):  # not assigned any more: nothing to pause
            self.consumer.pause(part.tp)

    async def _reclaim_stale_fences(self) -> None:
        """A fenced partition the rebalance did not take away (unexpected: a failed membership
        check means a rebalance): read it again from the committed offset with the state in
        the changelog (the other writer's entries included), so the fence checks run again."""
        now = time.monotonic()
        stale = [
            p for p in self.parts.values() if p.fenced_at is not None and now - p.fenced_at > FENCE_HOLD_S
        ]
        for part in stale:
            try:
                await self._adopt([part.tp])
                fresh = self.parts[part.tp.partition]
                self.consumer.seek(part.tp, fresh.next_offset)
                fresh.rewound = True
                self.consumer.resume(part.tp)
            except (KafkaError, AssertionError) as exc:
                self.parts[part.tp.partition] = part
                part.fenced_at = now
                log.warning(
                    "fenced partition not reclaimed",
                    extra={"partition": part.tp.partition, "error": repr(exc)},
                )
            else:
                log.info("fenced partition read again", extra={"partition": part.tp.partition})

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
