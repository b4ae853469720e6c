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

This module reads: it owns partitions (assignment, revocation, the state restored from the
changelog), feeds their records to the partition batches in offset order, and decides when
a cut is due; ``writer.py`` writes a cut (its order, replay and fencing rules are there).
A fenced partition is held ``FENCE_HOLD_S`` for the rebalance that takes it away, measured
on the ``Clock`` port. Its clients come from ``connect`` (``clients.py``; the composition
root, ``eventpipe.bootstrap``, supplies it) or ``attach``. The group consumer keeps membership,
offsets and commits; the records come from a ``RecordSource`` (``source.py``: librdkafka's
fetcher by default) that the pipeline assigns, seeks and pauses to match what it owns.

On revocation the open cuts of the revoked partitions are dropped (their offsets are not
committed, so the new owner replays them); the lock makes a revocation wait for a cut that
is being written.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import ConsumerStoppedError, KafkaError
from mode import Service

from eventpipe.clock import Clock, SystemClock
from eventpipe.errors import StorageError
from eventpipe.settings import Settings
from eventpipe.stream.batch import BadRecord, PartitionBatch, decode_run, parse_event
from eventpipe.stream.clients import Connect, StreamClients
from eventpipe.stream.cuts import CutPolicy
from eventpipe.stream.metrics import StreamMetrics
from eventpipe.stream.partition import Owned
from eventpipe.stream.source import RecordSource, Run
from eventpipe.stream.writer import CutWriter

log = logging.getLogger("eventpipe.stream.pipeline")
# How long a fenced partition waits for the rebalance that takes it away before it is read
# again from the committed offset (a safety net: a failed membership check means a rebalance).
FENCE_HOLD_S = 30.0
# The longest a fetch waits for records when none are there (``_fetch_wait_ms``).
FETCH_WAIT_MS = 200
# A cut open for this fraction of the flush bound joins the round of a cut that is due
# (``Pipeline._write_due``); cut at once, the partitions' next cuts open together.
ROUND_FRACTION = 0.5
# A cut closed inside a fetched run by a size bound takes the ripe cuts along too
# (``Pipeline._write_inline``); an hour or replay cut is its partition's own boundary.
SIZE_REASONS = frozenset({"count", "bytes"})


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.pipeline.revoke(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.pipeline.assign(assigned)


class Pipeline(Service):
    def __init__(
        self,
        settings: Settings,
        metrics: StreamMetrics,
        clock: Clock | None = None,
        connect: Connect | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.settings = settings
        self.metrics = metrics
        self.clock = clock or SystemClock()
        self.connect = connect
        self.parts: dict[int, Owned] = {}
        self.lock = asyncio.Lock()
        self.max_records = 5000
        self._task: asyncio.Future[None] | None = None
        self._crashing: asyncio.Future[None] | None = None
        self.clients: StreamClients | None = None

    def attach(self, clients: StreamClients) -> None:
        """Use these clients (``on_start`` attaches what ``connect`` makes)."""
        self.clients = clients
        self.consumer, self.changelog = clients.consumer, clients.changelog
        self.writer = CutWriter(self.settings, self.metrics, self.clock, clients)
        self.records: RecordSource = self.writer.records

    async def on_start(self) -> None:
        if self.connect is None:
            raise RuntimeError("the pipeline needs a connect (eventpipe.bootstrap.build_stream provides it)")
        self.attach(await self.connect())
        self.consumer.subscribe([self.settings.events_topic], listener=_Rebalance(self))
        await self.consumer.start()
        self._task = asyncio.ensure_future(self._run())
        self._task.add_done_callback(self._loop_ended)

    def _loop_ended(self, task: asyncio.Future[None]) -> None:
        """An error the loop does not handle crashes the worker (it exits non-zero, its
        supervisor starts it again, and it replays from the committed offsets), never just the
        loop: a process left up reading nothing would keep its partitions, unread, until the
        group's poll interval ran out, and look healthy meanwhile."""
        if task.cancelled() or (exc := task.exception()) is None:
            return
        log.critical("the consumer loop failed: the worker stops", exc_info=exc)
        self._crashing = asyncio.ensure_future(self.crash(exc))

    async def on_stop(self) -> None:
        if self.clients is None:
            return  # never started
        if self._task is not None:
            async with self.lock:  # let a cut being written finish (and commit) first
                self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            await self.writer.drain()  # notices of committed cuts still on their way
        await self.consumer.stop()  # leaves the group: the partitions move on at once
        await self.records.close()  # after: a rebalance that stop() lets finish still calls it
        await self.clients.producer.stop()

    # ------------------------------------------------------------------ rebalance
    async def revoke(self, revoked: set[TopicPartition]) -> None:
        async with self.lock:
            self.records.revoke(revoked)
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
        starts = await self._start_offsets(tps)
        states = await self.changelog.restore({tp.partition: starts[tp] for tp in tps})
        s = self.settings
        for tp in tps:
            policy = CutPolicy(s.archive_max_events, s.archive_max_bytes, s.flush_interval_s, self.clock)
            batch = PartitionBatch(tp.partition, policy, states[tp.partition])
            self.parts[tp.partition] = part = Owned(tp, batch, next_offset=starts[tp])
            try:
                self.records.assign(tp, starts[tp])
            except KafkaError as exc:  # held, then read again from the committed offset (reclaim)
                part.fenced_at = self.clock.monotonic()
                extra = {"partition": tp.partition, "error": repr(exc)}
                log.warning("record source: assign failed", extra=extra)

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
                wait_ms = self._fetch_wait_ms()
                fetched = await self.records.fetch(self.max_records, wait_ms)
            except ConsumerStoppedError:
                return
            # a partition sought once this fetch is back (e.g. its ripe cut failed in the round
            # of another partition's run) gets its run again from the seek: this one is stale,
            # and folded it would pass the records between the seek and the run (``Owned.seek``)
            seeks = {p: part.seeks for p in fetched if (part := self.parts.get(p)) is not None}
            async with self.lock:
                for p, fetched_run in fetched.items():
                    part = self.parts.get(p)
                    if part is None or part.fenced_at is not None or part.seeks != seeks.get(p):
                        continue  # fetched before a revocation, a fence or a seek
                    if (run := self._in_sequence(part, fetched_run)) is not None:
                        await self._consume(part, *run)
                await self._write_due()
                await self.reclaim_stale_fences()
                self._observe()

    async def _write_due(self) -> None:
        """When a partition's cut is due on the flush bound, write it in one round with every
        other open cut that has been open for ``ROUND_FRACTION`` of the bound: they would be
        due within the next half bound, each to be fenced, written and committed alone; cut
        now, their next cuts open together, so the partitions stay in step (``write_round``)."""
        policies = [(part, part.batch.policy) for part in self.parts.values()]
        if not any(policy.expired() for _, policy in policies):
            return
        due = [(part, "time" if p.expired() else "round") for part, p in policies if p.ripe(ROUND_FRACTION)]
        await self.writer.write_round(due)

    async def _write_inline(self, part: Owned, reason: str) -> bool:
        """Write ``part``'s cut, due inside a fetched run; False if it was fenced off or
        abandoned. One closed by a size bound (``SIZE_REASONS``) takes along, in one round,
        every other partition's cut open for ``ROUND_FRACTION`` of the flush bound, as a time
        cut does (``_write_due``): without them most count cuts were written alone, each with
        its own fence, commit and round trips. Those partitions are between fetches, their
        runs folded (``_consume`` folds a run before it returns)."""
        cuts = [(part, reason)]
        if reason in SIZE_REASONS:
            ripe = (other for other in self.parts.values() if other is not part)
            cuts += [(other, "round") for other in ripe if other.batch.policy.ripe(ROUND_FRACTION)]
        return (await self.writer.write_round(cuts))[0]

    def _fetch_wait_ms(self) -> int:
        """How long a fetch may wait for records: ``FETCH_WAIT_MS``, but no longer than until
        the first open cut is due on the flush bound (a caught-up worker writes it on time
        instead of up to one wait late)."""
        due = [d for part in self.parts.values() if (d := part.batch.policy.expires_in()) is not None]
        return min(FETCH_WAIT_MS, math.ceil(min(due, default=FETCH_WAIT_MS) * 1000))

    def _in_sequence(self, part: Owned, run: Run) -> Run | None:
        """The part of a fetched run that continues this partition exactly where it stands.
        aiokafka hands out a new assignment's records as soon as it is set, possibly before
        our assignment callback has run (those were skipped): then read again from
        ``next_offset``. None: nothing of the run to fold."""
        offsets, values = run
        first = offsets[0]
        if first == part.next_offset or (part.rewound and first > part.next_offset):
            part.rewound = False
            return run
        if first > part.next_offset:
            log.info(
                "rewinding", extra={"partition": part.tp.partition, "to": part.next_offset, "got": first}
            )
            part.seek(self.records, part.next_offset)
            return None
        skip = bisect.bisect_left(offsets, part.next_offset)  # already folded (offsets ascend)
        return (offsets[skip:], values[skip:]) if skip < len(offsets) else None

    async def _consume(self, part: Owned, offsets: list[int], values: list[Any]) -> None:
        batch, events, write = part.batch, self.metrics.events, self._write_inline
        # the whole fetch decoded and checked as columns, else (any unusual record) record by record
        run = decode_run(batch.state, values)
        sizes = list(map(len, values))
        i = 0
        while i < len(offsets):
            # a stretch of the run the open cut takes whole: the cut policy once, not per record
            room = 0
            if run is not None and not (part.verify and not batch.lines):
                room = batch.policy.room(run.received[i][:13], run.hours, sizes, i)
            if run is not None and room:
                reason = batch.add_run(run, offsets, values, sizes, i, i + room)
                i += room
                part.next_offset = offsets[i - 1] + 1
                if reason and not await write(part, reason):
                    return
                continue
            offset, value = offsets[i], values[i]
            i += 1
            try:
                event = parse_event(value) if run is None else run.events[i - 1]
            except BadRecord as exc:
                if batch.before(offset, None, 0) and not await write(part, "replay"):
                    return
                events.labels("rejected").inc()
                reason = batch.add_rejected(offset, value, exc.reason, str(exc))
            else:
                size = len(value)
                cut_reason = batch.before(offset, event, size)
                if cut_reason and not await write(part, cut_reason):
                    return
                if part.verify and not batch.lines and not await self._verify(part, offset, event):
                    return
                reason = batch.add_event(offset, value, event, run, i - 1)
            part.next_offset = offset + 1
            if reason and not await write(part, reason):
                return
        batch.fold()  # the fetched run at once (a cut written above folded its own part first)
        events.labels("processed").inc(len(offsets))

    async def _verify(self, part: Owned, offset: int, event: dict[str, Any]) -> bool:
        """Before opening a cut after (re)assignment or a failure: did a previous run
        already write it? Then replay it exactly (cut at its recorded last offset)."""
        key = part.batch.opening_key(offset, event)
        try:
            last = await self.writer.s3.recorded_last_offset(key) if key else None
        except StorageError as exc:
            self.writer.abandon(part, exc, offset)
            return False
        if last is None:
            part.verify = False  # objects are written in offset order: none exist beyond this
        else:
            part.batch.policy.force(last)
            part.raw_exists = True
            log.info("replaying a written cut", extra={"partition": part.tp.partition, "first": offset})
        return True

    async def reclaim_stale_fences(self) -> None:
        """A fenced partition the rebalance did not take away within ``FENCE_HOLD_S``
        (unexpected: a failed membership check means a rebalance): read it again from the
        committed offset with the state in the changelog (the other writer's entries
        included), so the fence checks run again."""
        now = self.clock.monotonic()
        stale = [
            p for p in self.parts.values() if p.fenced_at is not None and now - p.fenced_at > FENCE_HOLD_S
        ]
        for part in stale:
            try:
                await self._adopt([part.tp])
                fresh = self.parts[part.tp.partition]
                fresh.seek(self.records, fresh.next_offset)
                self.records.resume(part.tp)
            except (KafkaError, AssertionError) as exc:
                self.parts[part.tp.partition] = part
                part.fenced_at = now
                log.warning(
                    "fenced partition not reclaimed",
                    extra={"partition": part.tp.partition, "error": repr(exc)},
                )
            else:
                log.info("fenced partition read again", extra={"partition": part.tp.partition})

    def _observe(self) -> None:
        m = self.metrics
        for p, part in self.parts.items():
            label = str(p)
            m.state_entries.labels(label).set(part.batch.state.size)
            high = self.records.highwater(part.tp)
            if part.committed >= 0:
                m.committed.labels(label).set(part.committed)
            if high is not None and part.committed >= 0:
                m.lag.labels(label).set(max(high - part.committed, 0))
