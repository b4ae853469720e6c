"""Dead letters to S3: the collector's rejected events outlive the topic's 7-day retention.

The collector publishes each invalid event of a partly valid batch to the dead-letter topic
(``deadletter_topic``: reason, detail, source, receivedAt, index and the message as sent).
This archiver, a second consumer loop of the stream worker (consumer group
``<stream_app_id>-deadletters``), writes them to
``rejected/ingest/dt=<receivedAt date>/ingest+<partition>+<first offset>.jsonl.gz``, one
dead letter per line with its ``partition`` and ``offset``, and commits ``last + 1`` only
after the PUT: nothing is lost, and a crash before the commit replays the same cut.

Exactly once, as raw/ does it (``cuts.py``): names come from offsets and the first record's
date, an object never spans a day, and every object records its ``last-offset`` in S3
metadata. A (re)started or newly assigned worker opening a cut whose object exists cuts at
that recorded offset and does not write it again, so a replay never makes a second,
overlapping object. What remains (two workers writing the same cut at the same instant
during a rebalance, with different wall-clock cuts) at worst duplicates lines across two
objects: every line names its (partition, offset), and ``eventpipe rejected`` reads each
once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, ConsumerStoppedError, IllegalStateError, KafkaError
from mode import Service

from eventpipe.errors import StorageError
from eventpipe.keys import rejected_key
from eventpipe.s3 import gzip_json_rows
from eventpipe.settings import Settings
from eventpipe.stream.batch import S3Object
from eventpipe.stream.clients import ConnectLetters
from eventpipe.stream.cuts import Clock, CutPolicy, SystemClock
from eventpipe.stream.metrics import StreamMetrics
from eventpipe.timeutil import format_ts, parse_ts

log = logging.getLogger("eventpipe.stream.deadletters")
STAGE = "ingest"
MAX_LETTERS = 10_000


def _received(letter: dict[str, Any]) -> datetime | None:
    try:
        return parse_ts(letter["receivedAt"])
    except (KeyError, TypeError, ValueError, OverflowError):
        return None


def letter_line(partition: int, offset: int, value: bytes | None, timestamp_ms: int) -> dict[str, Any]:
    """One archived line: the dead letter as published, and where it was in the topic. A
    record that is not a dead letter is kept too (as text), dated by its Kafka timestamp."""
    try:
        letter = orjson.loads(value) if value is not None else None
    except orjson.JSONDecodeError:
        letter = None
    if not isinstance(letter, dict):
        raw = None if value is None else value.decode("utf-8", "replace")
        letter = {"reason": "unreadable_dead_letter", "detail": "not a dead-letter record", "raw": raw}
    if _received(letter) is None:
        letter["receivedAt"] = format_ts(datetime.fromtimestamp(timestamp_ms / 1000, UTC))
    return {**letter, "partition": partition, "offset": offset}


def letter_day(line: dict[str, Any]) -> str:
    """The UTC date that names the line's object (``letter_line`` made it parseable)."""
    received = _received(line)
    assert received is not None, "letter_line dates every line"
    return f"{received:%Y-%m-%d}"


def key_for(partition: int, first_offset: int, day: str) -> str:
    return rejected_key(STAGE, partition, first_offset, datetime.fromisoformat(day))


@dataclass
class LetterCut:
    """One partition's open cut of dead letters (pure: the clock is the policy's)."""

    partition: int
    policy: CutPolicy
    lines: list[dict[str, Any]] = field(default_factory=list)
    day: str = ""  # receivedAt date of the cut's first dead letter: names the object
    verify: bool = True  # look for an object a previous run wrote before opening a cut
    exists: bool = False  # the open cut's object is already in S3 (a replay)

    def opening_key(self, line: dict[str, Any]) -> str | None:
        """The key a cut opened by ``line`` gets (None: the cut is already open)."""
        if self.lines:
            return None
        return key_for(self.partition, line["offset"], letter_day(line))

    def before(self, line: dict[str, Any], size: int) -> str | None:
        """The day plays the hour's part in ``CutPolicy``: an object never spans a day."""
        return self.policy.before(line["offset"], letter_day(line), size)

    def add(self, line: dict[str, Any], size: int) -> str | None:
        if not self.lines:
            self.day = letter_day(line)
        self.lines.append(line)
        return self.policy.add(line["offset"], letter_day(line), size)

    def obj(self) -> S3Object | None:
        """The closed cut's object (None for an empty cut)."""
        if not self.lines:
            return None
        key = key_for(self.partition, self.policy.first_offset, self.day)
        meta = {"last-offset": str(self.policy.last_offset), "count": str(len(self.lines))}
        return S3Object(key, "rejected", gzip_json_rows(self.lines), len(self.lines), meta)

    def reset(self) -> None:
        self.policy.reset()
        self.lines, self.day, self.exists = [], "", False


class DeadLetterArchiver(Service):
    """Its Kafka consumer and S3 writer come from ``connect`` (``clients.deadletter_connect``
    from the composition root), made on the worker's loop when the service starts."""

    def __init__(
        self,
        settings: Settings,
        metrics: StreamMetrics,
        connect: ConnectLetters,
        clock: Clock | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.settings = settings
        self.metrics = metrics
        self.connect = connect
        self.clock = clock or SystemClock()
        self.cuts: dict[int, LetterCut] = {}

    async def on_start(self) -> None:
        clients = await self.connect()
        self.s3, self.consumer = clients.storage, clients.consumer
        await self.consumer.start()
        self._task = asyncio.ensure_future(self._run())

    async def on_stop(self) -> None:
        task = getattr(self, "_task", None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.consumer.stop()

    def _cut_of(self, partition: int) -> LetterCut:
        if partition not in self.cuts:
            s = self.settings
            policy = CutPolicy(MAX_LETTERS, s.archive_max_bytes, s.flush_interval_s, self.clock)
            self.cuts[partition] = LetterCut(partition, policy)
        return self.cuts[partition]

    async def _run(self) -> None:
        while not self.should_stop:
            try:
                fetched = await self.consumer.getmany(timeout_ms=500, max_records=2000)
            except ConsumerStoppedError:
                return
            assigned = {tp.partition for tp in self.consumer.assignment()}
            for gone in set(self.cuts) - assigned:  # revoked: the new owner replays the open cut
                self.cuts.pop(gone)
            for tp, records in fetched.items():
                await self._consume(tp, records)
            for partition, cut in list(self.cuts.items()):
                if cut.policy.expired():
                    await self._write(TopicPartition(self.settings.deadletter_topic, partition), cut)

    async def _consume(self, tp: TopicPartition, records: list) -> None:
        cut = self._cut_of(tp.partition)
        for record in records:
            line = letter_line(tp.partition, record.offset, record.value, record.timestamp)
            size = len(record.value or b"")
            if cut.before(line, size) and not await self._write(tp, cut):
                return
            if cut.verify and not cut.lines and not await self._verify(tp, cut, line):
                return
            if cut.add(line, size) and not await self._write(tp, cut):
                return

    async def _verify(self, tp: TopicPartition, cut: LetterCut, line: dict[str, Any]) -> bool:
        """Did a previous run write the cut this line opens? Then end it where that one ended."""
        key = cut.opening_key(line)
        try:
            last = await self.s3.recorded_last_offset(key, torn_ok=True) if key else None
        except StorageError as exc:
            self._abandon(tp, cut, line["offset"], exc)
            return False
        if last is None:
            cut.verify = False  # objects are written in offset order: none exist beyond this
        elif last >= line["offset"]:
            cut.policy.force(last)
            cut.exists = True
        return True

    async def _write(self, tp: TopicPartition, cut: LetterCut) -> bool:
        if not cut.policy.is_open:
            return True
        obj, last = cut.obj(), cut.policy.last_offset
        try:
            if obj is not None and not cut.exists:
                await self.s3.put(obj)
        except StorageError as exc:
            self._abandon(tp, cut, cut.policy.first_offset, exc)
            return False
        if obj is not None:
            for line in cut.lines:
                self.metrics.deadletters.labels(str(line.get("reason"))[:64]).inc()
            self.metrics.batches.labels("rejected").inc()
        cut.reset()
        try:
            await self.consumer.commit({tp: last + 1})
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:  # a rebalance: replayed
            log.warning("dead-letter commit failed", extra={"partition": tp.partition, "error": repr(exc)})
            cut.verify = True
        return True

    def _abandon(self, tp: TopicPartition, cut: LetterCut, first: int, exc: BaseException) -> None:
        """S3 failed after bounded retries: nothing committed, read the cut again later."""
        self.metrics.flush_failures.inc()
        log.error(
            "dead-letter cut abandoned, will retry",
            extra={"partition": tp.partition, "first": first, "error": f"{type(exc).__name__}: {exc}"},
        )
        cut.reset()
        cut.verify = True
        with contextlib.suppress(KafkaError, AssertionError, IllegalStateError):
            self.consumer.seek(tp, first)
