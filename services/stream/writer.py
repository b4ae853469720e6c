"""Writing one cut of a partition: fence, objects, state, commit, notices.

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
            await self.fence_and_gzip(part, objects, first)
            todo = await self.unwritten(part, objects, last)
            # The raw object goes first and alone: finding it is how a replay knows the cut
            # was written (and where it ended), so no other object of a cut may exist without it.
            raw = [o for o in todo if o.table == "events"]
            if raw:
                await self.s3.put(raw[0], exclusive=True)
            # rejected/ keys carry the write date (a replay on another day makes a second
            # object) and are never loaded: written without the key fence
            rest = [self.s3.put(o, exclusive=o.table != "rejected") for o in todo if o.table != "events"]
            await gather_all(*rest, self.changelog.flush(tp.partition, batch.state, first, last))
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
        try:
            await self.notify(objects, part)
        except KafkaError as exc:  # committed already; the loader also lists S3 (contracts section 4)
            self.producer_broken = self.producer_broken or isinstance(exc, PRODUCER_BROKEN)
            log.warning("batch notices not sent", extra={"partition": tp.partition, "error": repr(exc)})
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

    async def fence_and_gzip(self, part: Owned, objects: list[S3Object], first: int) -> None:
        """``fence`` while the raw object's body is gzipped in a thread: the largest CPU cost
        of a cut overlaps the fence's two broker round trips. The HEADs and PUTs come after
        both, so the time between the key check and the PUT does not grow."""
        raw = next((o for o in objects if o.table == "events"), None)
        if raw is None or part.raw_exists:  # nothing to write, or a replay that follows it
            await self.fence(part, first)
            return
        gzipping = asyncio.ensure_future(asyncio.to_thread(gzip_raw, part.batch.lines))
        try:
            await self.fence(part, first)
        finally:
            raw.body = await gzipping  # never left running behind a failed fence

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

    async def notify(self, objects: list[S3Object], part: Owned) -> None:
        """Batch notices (docs/contracts.md section 4): hints for the loader, after the upload."""
        written_at = format_ts(self.clock.now())
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
                await self.clients.producer.send(
                    self.settings.batches_topic, orjson.dumps(notice), key=key.encode()
                )
            )
        for future in futures:
            await future

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
