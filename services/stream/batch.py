"""One partition's open micro-batch and the S3 objects it becomes (pure, no I/O).

``PartitionBatch.add_event`` takes the parsed records of one partition in offset order: it
checks what the fold will read, buffers the unchanged value bytes for ``raw/``, queues the
event for the fold and says when the ``CutPolicy`` wants a cut. ``fold`` folds the queued
events in one run (``PartitionState.fold_many``); the pipeline calls it after each fetch,
and ``objects`` before a cut becomes objects.
``objects()`` turns a closed cut into the objects of docs/contracts.md section 3.
A record that is not a usable event never stops the stream: it goes to ``rejected/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from isal import isal_zlib

from eventpipe.keys import agg_key, raw_key, rejected_key
from eventpipe.s3 import gzip_body, gzip_json_rows, jsonl
from eventpipe.stream.columnar import fold_slice
from eventpipe.stream.columns import Run, decode_run
from eventpipe.stream.cuts import CutPolicy
from eventpipe.stream.fold import TABLES, Deltas, Folded, PartitionState
from eventpipe.stream.records import BadRecord, parse_event
from eventpipe.timeutil import parse_ts

__all__ = [
    "BadRecord",
    "PartitionBatch",
    "Run",
    "S3Object",
    "decode_run",
    "gzip_raw",
    "parse_event",
]

# Level 1: the raw archive is the hot path (level 9 cost more than the whole fold) and
# gzip output is deterministic for a given level, so a replay still writes the same bytes.
RAW_GZIP_LEVEL = 1
GZIP_WBITS = 16 + 15  # a gzip member (header with mtime 0), 32 KB window
# Lines per piece of the raw body fed to the compressor (~400 KB of the bench's events): a
# piece is still in the CPU caches when it is compressed; one join of a whole cut (4-20 MB)
# was not, and cost ~0.15 µs per event more (docs/stream.md, "gzip: ISA-L").
RAW_PIECE_LINES = 1024


def gzip_raw(lines: list[bytes], piece: int = RAW_PIECE_LINES) -> bytes:
    """The raw object's body: the JSONL of ``lines`` (``eventpipe.s3.jsonl``: each line with
    exactly one newline), as one gzip member (ISA-L, level 1, ``mtime`` 0) compressed piece
    by piece. The same lines always give the same bytes (a replay); other bytes than
    ``gzip_lines`` of the same lines once a cut has more than one piece."""
    compressor = isal_zlib.compressobj(RAW_GZIP_LEVEL, isal_zlib.DEFLATED, GZIP_WBITS)
    pieces = [compressor.compress(jsonl(lines[at : at + piece])) for at in range(0, len(lines), piece)]
    pieces.append(compressor.flush())
    return b"".join(pieces)


@dataclass
class S3Object:
    key: str  # without the settings' key prefix
    table: str  # "events", an aggregate table, or "rejected"
    body: bytes
    rows: int
    metadata: dict[str, str]


@dataclass
class PartitionBatch:
    partition: int
    policy: CutPolicy
    state: PartitionState = field(default_factory=PartitionState)
    lines: list[bytes] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    deltas: Deltas = field(default_factory=Deltas)
    first_archived: int = -1
    first_received: datetime | None = None
    duplicates: int = 0
    unfolded: list[tuple[int, Folded]] = field(default_factory=list)
    # records queued for the columnar fold: a decoded run, the index of the first, their offsets
    columns: tuple[Run, int, list[int]] | None = None

    def opening_key(self, offset: int, event: dict[str, Any]) -> str | None:
        """The raw key this event would open, if it is the cut's first archived event."""
        if self.lines:
            return None
        return raw_key(parse_ts(event["receivedAt"]), self.partition, offset)

    def before(self, offset: int, event: dict[str, Any] | None, size: int) -> str | None:
        return self.policy.before(offset, event["receivedAt"][:13] if event else None, size)

    def add_event(
        self, offset: int, value: bytes, event: dict[str, Any], run: Run | None = None, index: int = -1
    ) -> str | None:
        """Fold and buffer one event (cut opened beforehand); the reason to cut after it.
        With ``run`` (``decode_run`` of the fetch, already checked) it is record ``index`` of
        that run and is queued for the columnar fold; without, it is extracted here."""
        if run is None:
            try:
                folded = self.state.extract(event)
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                return self.add_rejected(offset, value, "unfoldable", f"{type(exc).__name__}: {exc}"[:200])
            if self.columns is not None:
                self.fold()  # keep offset order across the two queues
            self.unfolded.append((offset, folded))
        else:
            self._columns_queue(run, index).append(offset)
        if not self.lines:
            self.first_archived = offset
            self.first_received = parse_ts(event["receivedAt"])
        self.lines.append(value)
        return self.policy.add(offset, event["receivedAt"][:13], len(value))

    def add_run(
        self, run: Run, offsets: list[int], values: list[bytes], sizes: list[int], start: int, end: int
    ) -> str | None:
        """``add_event`` of records ``start..end-1`` of a decoded run at once, which the cut
        policy's ``room`` let in whole; the reason to cut after the last."""
        self._columns_queue(run, start).extend(offsets[start:end])
        if not self.lines:
            self.first_archived = offsets[start]
            self.first_received = parse_ts(run.received[start])
        self.lines.extend(values[start:end])
        hour = run.received[start][:13]
        return self.policy.add_many(
            offsets[start], offsets[end - 1], hour, end - start, sum(sizes[start:end])
        )

    def _columns_queue(self, run: Run, start: int) -> list[int]:
        """The offsets queued for the columnar fold, to which record ``start`` of ``run`` is
        added next: the open queue if it ends right before that record of the same run, else
        a new one (what was queued is folded first, keeping offset order)."""
        queued = self.columns
        if queued is None or queued[0] is not run or queued[1] + len(queued[2]) != start:
            self.fold()
            queued = self.columns = (run, start, [])
        return queued[2]

    def fold(self) -> None:
        """Fold the queued events into the state and the cut's deltas."""
        fresh: list[bool] = []
        if self.unfolded:
            fresh = self.state.fold_many(self.unfolded, self.deltas)
            self.unfolded = []
        elif self.columns is not None:
            run, start, offsets = self.columns
            self.columns = None
            fresh = fold_slice(self.state, run, offsets, start, self.deltas)
        self.duplicates += len(fresh) - sum(fresh)

    def add_rejected(self, offset: int, value: bytes | None, reason: str, detail: str) -> str | None:
        self.rejected.append(
            {
                "reason": reason,
                "detail": detail,
                "partition": self.partition,
                "offset": offset,
                "value": None if value is None else value.decode("utf-8", "replace"),
            }
        )
        return self.policy.add(offset, None, 0)

    def objects(self, raw_exists: bool, now: datetime, *, gzip_now: bool = True) -> list[S3Object]:
        """The closed cut's objects: raw first (its presence marks the cut as written),
        then one per non-empty aggregate table, then rejected records. Without ``gzip_now``
        the raw object's body is left empty for the caller to fill with ``gzip_raw(lines)``
        (the writer does it in a thread); a replay's raw object (``raw_exists``) has none."""
        self.fold()
        first, last = self.policy.first_offset, self.policy.last_offset
        out: list[S3Object] = []
        meta = {"first-offset": str(self.first_archived), "last-offset": str(last)}
        if self.lines and self.first_received is not None:
            key = raw_key(self.first_received, self.partition, self.first_archived)
            body = gzip_raw(self.lines) if gzip_now and not raw_exists else b""
            out.append(
                S3Object(key, "events", body, len(self.lines), {**meta, "count": str(len(self.lines))})
            )
            for table in TABLES:
                count = self.deltas.count(table)
                if count:
                    key = agg_key(table, self.partition, self.first_archived, self.first_received)
                    # = gzip_json_rows(rows, 1); level 1 here too: level 9 cost ~10 µs per assignment row
                    body = gzip_body(self.deltas.jsonl(table), RAW_GZIP_LEVEL)
                    out.append(S3Object(key, table, body, count, {**meta, "count": str(count)}))
        if self.rejected:
            key = rejected_key("stream", self.partition, first, now)
            out.append(S3Object(key, "rejected", gzip_json_rows(self.rejected), len(self.rejected), {}))
        return out

    def reset(self) -> None:
        """Start the next cut (the aggregation state carries on)."""
        self.policy.reset()
        self.lines = []
        self.rejected = []
        self.deltas = Deltas()
        self.first_archived = -1
        self.first_received = None
        self.duplicates = 0
        self.unfolded = []
        self.columns = None
