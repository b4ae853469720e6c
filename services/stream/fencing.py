"""Fencing a round of cuts (``writer.py``): may this worker still write them?

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
A round's cuts are fenced together: check 1 for each partition concurrently, check 2 as one
commit of all their unchanged offsets, which the coordinator takes or refuses whole (the
membership is the worker's, not a partition's); a partition no longer assigned is refused by
the client before anything is sent, and found by committing each offset alone.
What remains: a worker that passes the checks and is then paused for longer than the
session timeout *between* its HEAD and its PUT could still replace an object the new owner
wrote meanwhile (or its changelog entries). ``s3_conditional_put`` (``If-None-Match: *``,
AWS S3) closes that window for the objects; s3rver has no conditional PUT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from eventpipe.clock import Clock
from eventpipe.stream.batch import S3Object
from eventpipe.stream.changelog import Record
from eventpipe.stream.metrics import StreamMetrics
from eventpipe.stream.partition import Diverged, Fenced, Owned, gather_all
from eventpipe.stream.storage import UNRECORDED, S3Writer

log = logging.getLogger("eventpipe.stream.pipeline")


@dataclass(eq=False)  # compared and hashed by identity: a round holds one cut per partition
class Cut:
    """One partition's cut in a round (``CutWriter.write_round``)."""

    part: Owned
    reason: str
    objects: list[S3Object] = field(default_factory=list)
    records: list[Record] = field(default_factory=list)  # its changelog records
    written: list[S3Object] = field(default_factory=list)  # the objects this write put
    first: int = field(init=False)
    last: int = field(init=False)

    def __post_init__(self) -> None:
        self.first, self.last = self.part.batch.policy.first_offset, self.part.batch.policy.last_offset


class Fencing:
    """The checks of the module docstring, for ``CutWriter`` (its consumer, store, metrics)."""

    consumer: Any  # the group's AIOKafkaConsumer
    records: Any  # the pipeline's RecordSource (a fenced partition is paused there)
    s3: S3Writer
    metrics: StreamMetrics
    clock: Clock

    async def fence(self, cuts: list[Cut]) -> dict[Cut, BaseException]:
        """Checks 1-2 of the module docstring for these cuts: each partition's committed offset
        (concurrently), then one membership commit for all that passed; the cuts refused."""
        committed = await asyncio.gather(
            *(self.consumer.committed(c.part.tp) for c in cuts), return_exceptions=True
        )
        refused: dict[Cut, BaseException] = {}
        held: dict[Cut, int] = {}
        for cut, offset in zip(cuts, committed, strict=True):
            if isinstance(offset, BaseException):
                refused[cut] = offset
            elif offset is not None and offset > cut.first:
                refused[cut] = Fenced(
                    f"the group committed {offset}, beyond this cut's first offset {cut.first}"
                )
            else:
                held[cut] = cut.first if offset is None else offset
        # Unchanged offsets, but the coordinator checks generation and member id: a worker
        # that was expelled (or is behind a rebalance) gets CommitFailedError here.
        return refused | await self.commit({c.part.tp: o for c, o in held.items()}, list(held))

    async def commit(self, offsets: dict[TopicPartition, int], cuts: list[Cut]) -> dict[Cut, BaseException]:
        """Commit ``offsets`` (one per cut, in order) in one request; the cuts it failed for.
        The coordinator takes or refuses a commit whole (this member, its generation): every
        cut in it shares the outcome. A partition no longer assigned is refused by the client
        before anything is sent (``IllegalStateError``): then each offset alone, to find it."""
        if not cuts:
            return {}
        try:
            await self.consumer.commit(offsets)
        except IllegalStateError as exc:
            if len(cuts) == 1:
                return {cuts[0]: exc}
            alone = await asyncio.gather(
                *(self.consumer.commit({c.part.tp: offsets[c.part.tp]}) for c in cuts),
                return_exceptions=True,
            )
            return {c: r for c, r in zip(cuts, alone, strict=True) if isinstance(r, BaseException)}
        except KafkaError as exc:
            return dict.fromkeys(cuts, exc)
        return {}

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
            self.records.pause(part.tp)
