"""Writing cuts: fence, objects, state, commit, notices; several partitions' cuts in a round.

A cut of partition ``p`` (``cuts.py``) is written in this order: fence (below; the raw gzip
and the changelog records are prepared in threads meanwhile), then the key check, raw object
(its ``last-offset`` metadata records where the cut ended), aggregate deltas and rejected
records, concurrently with the state changelog entries; the offset commit after both, then
notices on ``batches`` (their delivery awaited off the loop's path). docs/stream.md
"What a cut overlaps" says why each overlap is safe.
A round (``write_round``) writes several partitions' cuts together, each in that order: their
fences at once (one membership commit), their S3 writes and changelog records concurrently,
one offset commit for the cuts whose objects and records were all written; a cut that fails
is fenced off or abandoned alone.
A crash anywhere before the commit replays the cut: the worker that next owns ``p`` finds
the raw object, cuts at its recorded ``last-offset`` and writes what is missing (``fold.py``
makes the re-folded deltas identical). S3 failing after bounded retries abandons the cut
without a commit and seeks back to its first offset, so it is retried, never lost.
Fencing (a worker that may have lost its partitions writes nothing): ``fencing.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import TopicPartition
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
from eventpipe.gctune import FREEZING
from eventpipe.settings import Settings
from eventpipe.stream.batch import S3Object, gzip_raw
from eventpipe.stream.changelog import Record
from eventpipe.stream.clients import StreamClients
from eventpipe.stream.fencing import Cut, Fencing
from eventpipe.stream.marks import assignment_horizon, horizon
from eventpipe.stream.metrics import StreamMetrics
from eventpipe.stream.partition import Diverged, Fenced, Owned, gather_all
from eventpipe.timeutil import format_ts

log = logging.getLogger("eventpipe.stream.pipeline")

# After one of these the producer can never deliver to that partition again: its idempotence
# state (producer id, sequence numbers) is out of step with the broker's, and aiokafka does not
# reset it (aio-libs/aiokafka#1017). A new producer starts with a new id; the abandoned cut's
# replay writes the same records again, which the changelog and the loader take as they are.
PRODUCER_BROKEN = (OutOfOrderSequenceNumber, UnknownProducerId, ProducerFenced)


@dataclass
class Prepared:
    """A cut's work started in threads before its fence (``CutWriter.prepare``)."""

    records: asyncio.Future[list[Record]]  # its changelog records
    raw: S3Object | None = None  # its raw object, when its body is being gzipped
    body: asyncio.Future[bytes] | None = None  # that body

    @property
    def threads(self) -> list[asyncio.Future[Any]]:
        return [self.records] if self.body is None else [self.records, self.body]


class CutWriter(Fencing):
    def __init__(
        self, settings: Settings, metrics: StreamMetrics, clock: Clock, clients: StreamClients
    ) -> None:
        self.settings, self.metrics, self.clock = settings, metrics, clock
        self.clients = clients
        self.consumer = clients.consumer  # the producer: always clients.producer (renew_producer)
        self.records = clients.record_source()  # seeks and pauses go where the records come from
        self.s3, self.changelog = clients.storage, clients.changelog
        self.producer_broken = False
        self.notices: set[asyncio.Future[Any]] = set()  # deliveries of committed cuts' notices

    async def write(self, part: Owned, reason: str) -> bool:
        """Write the open cut of ``part`` (if any); False if it was fenced off or abandoned."""
        return (await self.write_round([(part, reason)]))[0]

    async def write_round(self, cuts: list[tuple[Owned, str]]) -> list[bool]:
        """Write the open cuts of several partitions together (one per partition), each in
        the order of the module docstring: their fences together (one membership commit),
        their HEADs, PUTs and changelog records concurrently, then one offset commit for the
        cuts whose objects and records all got written. A cut that fails is fenced off or
        abandoned alone (what a lone cut would have met); a refused membership or offset
        commit concerns every cut it carried. Per cut: False if it was fenced off or abandoned."""
        started = self.clock.monotonic()
        ok = {part.tp: True for part, _ in cuts}
        todo = [Cut(part, reason) for part, reason in cuts if part.batch.policy.is_open]
        for cut in todo:
            cut.objects = cut.part.batch.objects(cut.part.raw_exists, self.clock.now(), gzip_now=False)
        try:
            if todo and self.producer_broken:
                await self.renew_producer()
        except KafkaError as exc:
            todo = self.refused(todo, dict.fromkeys(todo, exc), ok)
        preparing = {cut: self.prepare(cut) for cut in todo}
        todo = self.refused(todo, await self.fence_round(todo, preparing), ok)
        # Owned (checks 1-2): each cut's records go to the changelog (once prepared) while its
        # keys are checked and its objects written (once its raw gzip is done); the commit
        # waits for all of them
        puts = (self.put_cut(cut, preparing[cut]) for cut in todo)
        written = await asyncio.gather(*puts, return_exceptions=True)
        todo = self.refused(todo, dict(zip(todo, written, strict=True)), ok)
        if todo:
            if delay := getattr(self.settings, "fault_commit_delay_s", 0.0):  # failpoint, tests only
                await asyncio.sleep(delay)
            todo = self.refused(todo, await self.commit({c.part.tp: c.last + 1 for c in todo}, todo), ok)
        for cut in todo:
            await self.finish(cut, started)
        return [ok[part.tp] for part, _ in cuts]

    def refused(self, cuts: list[Cut], failures: dict[Cut, Any], ok: dict[TopicPartition, bool]) -> list[Cut]:
        """Fence off or abandon each cut that failed (``failures``: cut -> exception or
        result); the cuts that go on. Anything else than a refusal is raised (a bug)."""
        going = []
        for cut in cuts:
            exc = failures.get(cut)
            if not isinstance(exc, BaseException):
                going.append(cut)
                continue
            ok[cut.part.tp] = False
            if isinstance(exc, (Fenced, CommitFailedError, IllegalStateError)):  # not (or no longer) ours
                self.fence_off(cut.part, exc)
            elif isinstance(exc, (Diverged, StorageError, KafkaError)):  # incl. ObjectExists
                self.producer_broken = self.producer_broken or isinstance(exc, PRODUCER_BROKEN)
                self.abandon(cut.part, exc, cut.first)
            else:
                raise exc
        return going

    async def put_cut(self, cut: Cut, prepared: Prepared) -> None:
        """One fenced cut's changelog records, sent once its thread has made them, beside its
        objects (``put_objects``), checked and written once its raw gzip is done: a cut does
        not wait for the other cuts' preparation, and its check-to-write window is as before
        (the HEAD follows the gzip). Both threads have finished when this returns."""
        part = cut.part

        async def changelog() -> None:
            cut.records = await prepared.records
            await self.changelog.flush(part.tp.partition, part.batch.state, cut.records)

        async def objects() -> list[S3Object]:
            if prepared.raw is not None and prepared.body is not None:
                prepared.raw.body = await prepared.body
            return await self.put_objects(part, cut.objects, cut.last)

        cut.written, _ = await gather_all(objects(), changelog())

    async def finish(self, cut: Cut, started: float) -> None:
        """A committed cut: seal its state, queue its notices, count it, open the next."""
        part, batch = cut.part, cut.part.batch
        part.committed = cut.last + 1
        batch.state.seal(cut.last)  # never folded again: compact, without offsets
        await self.announce(cut.objects, part)
        for obj in cut.written:  # objects a previous run wrote (replay) are not written again
            self.metrics.batches.labels(obj.table).inc()
        self.metrics.cuts.labels(cut.reason).inc()
        self.metrics.events.labels("duplicate").inc(batch.duplicates)
        self.metrics.flush_seconds.observe(self.clock.monotonic() - started)
        batch.reset()
        part.raw_exists = False
        self.maybe_prune(part)
        FREEZING.cut_committed()  # what the cut left in the state is not walked again

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

    async def fence_round(self, cuts: list[Cut], preparing: dict[Cut, Prepared]) -> dict[Cut, BaseException]:
        """``fence`` the cuts while their CPU work that needs no ownership runs in threads
        (``prepare``): the cuts refused, with why. A refused cut's threads are awaited here
        (giving it up resets the state they read); the others' go on into ``put_cut``."""
        try:
            refused = await self.fence(cuts) if cuts else {}
        except BaseException:  # never a thread left running behind a failed fence
            await asyncio.gather(*(f for p in preparing.values() for f in p.threads), return_exceptions=True)
            raise
        await asyncio.gather(*(f for c in refused for f in preparing[c].threads), return_exceptions=True)
        return refused

    def prepare(self, cut: Cut) -> Prepared:
        """Start a cut's changelog records and raw gzip in threads (the loop holds the
        partitions' lock: nothing else touches their state meanwhile)."""
        part = cut.part
        raw = next((o for o in cut.objects if o.table == "events"), None)
        records = asyncio.ensure_future(asyncio.to_thread(part.batch.state.cut_records, cut.first, cut.last))
        if raw is None or part.raw_exists:  # nothing to write, or a replay that follows it
            return Prepared(records)
        return Prepared(records, raw, asyncio.ensure_future(asyncio.to_thread(gzip_raw, part.batch.lines)))

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
            try:
                part.seek(self.records, first)
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
