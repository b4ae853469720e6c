"""Writing one cut of a partition: fence, objects, state, commit, notices.

A cut of partition ``p`` (``cuts.py``) is written in this order: fence (below; the raw gzip
and the changelog records are prepared in threads meanwhile), then the key check, raw object
(its ``last-offset`` metadata records where the cut ended), aggregate deltas and rejected
records, concurrently with the state changelog entries; the offset commit after both, then
notices on ``batches`` (their delivery awaited off the loop's path). docs/stream.md
"What a cut overlaps" says why each overlap is safe.
A crash anywhere before the commit replays the cut: the worker that next owns ``p`` finds
the raw object, cuts at its recorded ``last-offset`` and writes what is missing (``fold.py``
makes the re-folded deltas identical). S3 failing after bounded retries abandons the cut
without a commit and seeks back to its first offset, so it is retried, never lost.

Fencing (docs/contracts.md section 5: an object never changes once written). A worker can
lose its partitions without knowing it yet -- paused (SIGSTOP, GC, VM freeze) past the
session timeout, the group moves ``p`` to another worker, which replays from the committed
offset and writes *its* cut at the same deterministic key. Before writing anything of a cut,
``fence`` therefore checks (1) the group's committed offset for ``p`` (beyond this cut's
first offset: someone else owns ``p``), (2) the membership, on the broker: it commits the
committed offset again, unchanged, which the coordinator refuses (``CommitFailedError``)
unless this worker is a member of the current generation -- and within one generation only
one member owns ``p``; (3) the target keys, by HEAD (the raw key; the aggregate keys only
where the raw object exists, see ``unwritten``): an existing raw or aggregate object
whose ``last-offset`` differs from this cut's is never overwritten (the cut is abandoned and
replayed from its first offset, which then follows the recorded cut); one with the same
``last-offset`` has the same content and is not written again. A fenced worker drops
the cut without writing state, notices or a commit and pauses ``p`` until the rebalance
takes it away (or, failing that, the pipeline re-reads it from the committed offset and
restored state after ``FENCE_HOLD_S``). Notices follow the commit, so a cut whose commit
fails announces nothing.
What remains: a worker that passes the checks and is then paused for longer than the
session timeout *between* its HEAD and its PUT could still replace an object the new owner
wrote meanwhile (or its changelog entries). ``s3_conditional_put`` (``If-None-Match: *``,
AWS S3) closes that window for the objects; s3rver has no conditional PUT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)

from eventpipe.clock import Clock
from eventpipe.errors import StorageError
from eventpipe.settings import Settings
from eventpipe.stream.batch import S3Object, gzip_raw
from eventpipe.stream.changelog import Record
from eventpipe.stream.clients import StreamClients
from eventpipe.stream.marks import assignment_horizon, horizon
from eventpipe.stream.metrics import StreamMetrics
from eventpipe.stream.partition import Diverged, Fenced, Owned, gather_all
from eventpipe.stream.storage import UNRECORDED
from eventpipe.timeutil import format_ts

log = logging.getLogger("eventpipe.stream.pipeline")

# After one of these the producer can never deliver to that partition again: its idempotence
# state (producer id, sequence numbers) is out of step with the broker's, and aiokafka does not
# reset it (aio-libs/aiokafka#1017). A new producer starts with a new id; the abandoned cut's
# replay writes the same records again, which the changelog and the loader take as they are.
PRODUCER_BROKEN = (OutOfOrderSequenceNumber, UnknownProducerId, ProducerFenced)


class CutWriter:
    def __init__(
        self, settings: Settings, metrics: StreamMetrics, clock: Clock, clients: StreamClients
    ) -> None:
        self.settings, self.metrics, self.clock = settings, metrics, clock
        self.clients = clients
        self.consumer = clients.consumer  # the producer: always clients.producer (renew_producer)
        self.s3, self.changelog = clients.storage, clients.changelog
        self.producer_broken = False
        self.notices: set[asyncio.Future[Any]] = set()  # deliveries of committed cuts' notices

    async def write(self, part: Owned, reason: str) -> bool:
        """Write the open cut of ``part`` (if any); False if it was fenced off or abandoned."""
        batch, tp = part.batch, part.tp
        if not batch.policy.is_open:
            return True
        started = self.clock.monotonic()
        first, last = batch.policy.first_offset, batch.policy.last_offset
        objects = batch.objects(part.raw_exists, self.clock.now(), gzip_now=False)
        try:
            if self.producer_broken:
                await self.renew_producer()
            records = await self.fence_and_prepare(part, objects, first, last)
            # Owned (checks 1-2): the state's records go to the changelog while the keys are
            # checked and the objects written; the commit waits for both.
            changelog = self.changelog.flush(tp.partition, batch.state, records)
            todo, _ = await gather_all(self.put_objects(part, objects, last), changelog)
            if delay := getattr(self.settings, "fault_commit_delay_s", 0.0):  # failpoint, tests only
                await asyncio.sleep(delay)
            await self.consumer.commit({tp: last + 1})
        except (Fenced, CommitFailedError, IllegalStateError) as exc:  # not (or no longer) ours
            self.fence_off(part, exc)
            return False
        except (Diverged, StorageError, KafkaError) as exc:  # incl. ObjectExists (a conditional PUT lost)
            self.producer_broken = self.producer_broken or isinstance(exc, PRODUCER_BROKEN)
            self.abandon(part, exc, first)
            return False
        part.committed = last + 1
        batch.state.seal(last)  # never folded again: compact, without offsets
        await self.announce(objects, part)
        for obj in todo:  # objects a previous run wrote (replay) are not written again
            self.metrics.batches.labels(obj.table).inc()
        self.metrics.cuts.labels(reason).inc()
        self.metrics.events.labels("duplicate").inc(batch.duplicates)
        self.metrics.flush_seconds.observe(self.clock.monotonic() - started)
        batch.reset()
        part.raw_exists = False
        self.maybe_prune(part)
        return True

    async def renew_producer(self) -> None:
        """Replace the producer shared with the changelog by a new one (``PRODUCER_BROKEN``)."""
        if self.clients.new_producer is None:  # clients made by hand (tests): nothing to renew with
            self.producer_broken = False
            return
        old = self.clients.use_producer(await self.clients.new_producer())
        self.producer_broken = False
        log.warning("Kafka producer replaced: its idempotence state no longer matched the broker's")
        with contextlib.suppress(Exception):  # the old one's sends have failed already
            await asyncio.wait_for(old.stop(), timeout=5)

    async def fence_and_prepare(
        self, part: Owned, objects: list[S3Object], first: int, last: int
    ) -> list[Record]:
        """``fence`` while the cut's CPU work that needs no ownership runs in threads: the raw
        object's gzip and the state's changelog records (``cut_records``; the loop holds the
        partition's lock, nothing else touches its state meanwhile). Every HEAD, PUT and
        changelog send comes after all three, so no check-to-write window grows; the records."""
        state, lines = part.batch.state, part.batch.lines
        raw = next((o for o in objects if o.table == "events"), None)
        gzip = raw is not None and not part.raw_exists  # else nothing to write, or a replay that follows it
        # gather_all: never a thread left running behind a failed fence
        done = await gather_all(
            self.fence(part, first),
            asyncio.to_thread(state.cut_records, first, last),
            *([asyncio.to_thread(gzip_raw, lines)] if gzip else []),
        )
        if raw is not None and gzip:
            raw.body = done[2]
        return done[1]

    async def put_objects(self, part: Owned, objects: list[S3Object], last: int) -> list[S3Object]:
        """Check the keys (``unwritten``) and write what is missing, raw object first and alone:
        finding it is how a replay knows the cut was written (and where it ended), so no other
        object of a cut may exist without it. The objects written."""
        todo = await self.unwritten(part, objects, last)
        raw = [o for o in todo if o.table == "events"]
        if raw:
            await self.s3.put(raw[0], exclusive=True)
        # rejected/ keys carry the write date (a replay on another day makes a second
        # object) and are never loaded: written without the key fence
        rest = [o for o in todo if o.table != "events"]
        await gather_all(*(self.s3.put(o, exclusive=o.table != "rejected") for o in rest))
        return todo

    async def fence(self, part: Owned, first: int) -> None:
        """``Fenced`` unless this worker still owns the partition (module docstring)."""
        tp = part.tp
        committed = await self.consumer.committed(tp)
        if committed is not None and committed > first:
            raise Fenced(f"the group committed {committed}, beyond this cut's first offset {first}")
        # Unchanged offset, but the coordinator checks generation and member id: a worker
        # that was expelled (or is behind a rebalance) gets CommitFailedError here.
        await self.consumer.commit({tp: first if committed is None else committed})

    async def unwritten(self, part: Owned, objects: list[S3Object], last: int) -> list[S3Object]:
        """The cut's objects still to write. ``Diverged`` if one exists that another cut wrote
        (other ``last-offset``); one with this cut's ``last-offset`` has this content: skipped.
        An aggregate object without metadata (a torn write of a killed writer) is written again:
        the raw object, which passed this check, fixes the cut, hence the content.
        The raw key is checked first and alone: a cut's raw object is written before any of its
        aggregate objects, so where it does not exist none of them does, and their keys are
        checked only when it does (a replay) -- most cuts make one HEAD, not four."""
        fenced = [o for o in objects if o.table != "rejected"]
        raw = [o for o in fenced if o.table == "events"]
        found = await self._recorded(raw)
        if part.raw_exists and raw and not found:
            raise Diverged("the raw object this replay follows is gone")
        if found or not raw:  # a replay (or aggregates without a raw object, which objects() never makes)
            found.update(await self._recorded([o for o in fenced if o.table != "events"]))
        for key, rec in found.items():
            if rec != last:
                raise Diverged(f"{key} exists with last-offset {rec}, this cut ends at {last}")
        return [o for o in objects if o.key not in found]

    async def _recorded(self, objects: list[S3Object]) -> dict[str, int]:
        """The ``last-offset`` recorded by each of these objects' keys that exists (HEADs,
        concurrent; a torn aggregate object counts as absent: it is written again)."""
        recorded = await gather_all(
            *(self.s3.recorded_last_offset(o.key, torn_ok=o.table != "events") for o in objects)
        )
        return {o.key: rec for o, rec in zip(objects, recorded, strict=True) if rec not in (None, UNRECORDED)}

    def fence_off(self, part: Owned, exc: BaseException) -> None:
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
        part.fenced_at = self.clock.monotonic()
        with contextlib.suppress(KafkaError, AssertionError):  # not assigned any more: nothing to pause
            self.consumer.pause(part.tp)

    async def announce(self, objects: list[S3Object], part: Owned) -> None:
        """Queue the batch notices of a committed cut (docs/contracts.md section 4: hints for
        the loader, which also lists S3) on the producer, in cut order. Their delivery is
        awaited off the loop's path (``drain`` on stop); a failure is logged, and a broken
        producer replaced before the next cut, as when it was awaited here."""
        written_at = format_ts(self.clock.now())
        first, last, p = part.batch.first_archived, part.batch.policy.last_offset, part.tp.partition
        delivered: list[asyncio.Future[Any]] = []
        try:
            for obj in (o for o in objects if o.table != "rejected"):
                key = self.settings.s3_prefix + obj.key
                notice = {"key": key, "table": obj.table, "rows": obj.rows, "partition": p}
                notice |= {"first_offset": first, "last_offset": last, "written_at": written_at}
                send = self.clients.producer.send(
                    self.settings.batches_topic, orjson.dumps(notice), key=key.encode()
                )
                delivered.append(await send)
            task = asyncio.ensure_future(gather_all(*delivered))
        except KafkaError as exc:
            self.notices_failed(p, exc)
            return
        self.notices.add(task)
        task.add_done_callback(lambda done: self.notices_delivered(p, done))

    def notices_delivered(self, partition: int, task: asyncio.Future[Any]) -> None:
        self.notices.discard(task)
        exc = None if task.cancelled() else task.exception()
        if isinstance(exc, KafkaError):
            self.notices_failed(partition, exc)
        elif exc is not None:
            log.error("batch notices failed", extra={"partition": partition, "error": repr(exc)})

    def notices_failed(self, partition: int, exc: KafkaError) -> None:
        self.producer_broken = self.producer_broken or isinstance(exc, PRODUCER_BROKEN)
        log.warning("batch notices not sent", extra={"partition": partition, "error": repr(exc)})

    async def drain(self) -> None:
        """Wait for the notices still being delivered (on stop: none is dropped at exit)."""
        await asyncio.gather(*self.notices, return_exceptions=True)

    def abandon(self, part: Owned, exc: BaseException, offset: int) -> None:
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

    def maybe_prune(self, part: Owned) -> None:
        """Drop state older than the dedup window, at most once per hour of data time."""
        state = part.batch.state
        hour = state.high_received[:13]
        if not hour or hour == part.pruned_hour:
            return
        part.pruned_hour = hour
        dropped = state.prune(horizon(state.high_received, self.settings.dedup_window_hours))
        dropped += state.prune_assignments(
            assignment_horizon(state.high_received, self.settings.assignment_window_days)
        )
        if dropped:
            log.info("state pruned", extra={"partition": part.tp.partition, "entries": dropped})
