"""S3 batches as the loader sees them (pure): which table a key feeds, and an object's
JSON lines (docs/contracts.md §3).

A batch that cannot load is *corrupt*: it is quarantined with the reason, never retried
automatically and never allowed to block the batches behind it.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from eventpipe.errors import EventpipeError
from eventpipe.keys import AGG_PREFIX, RAW_PREFIX
from eventpipe.loader.tables import TARGETS


class CorruptBatch(EventpipeError):
    """An object that can never load; ``reason`` is a stable code (bad_gzip, too_large, bad_json, …)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# The stream writes objects of at most EVENTPIPE_ARCHIVE_MAX_BYTES (64 MiB) of lines; anything
# that inflates beyond this cap is not ours, and must not take the loader's memory with it.
MAX_OBJECT_BYTES = 256 * 1024 * 1024


def _plain_path(key: str) -> bool:
    """No ``.``/``..``/empty segments, backslashes or control characters: a key that a notice
    names must mean what it says (``raw/events/../../corrections/…`` passed a prefix check)."""
    segments_ok = all(part not in ("", ".", "..") for part in key.split("/"))
    return segments_ok and "\\" not in key and key.isprintable()


def table_of_key(key: str, prefix: str = "") -> str | None:
    """The target table of an S3 key (``raw/events/…`` -> events, ``agg/<t>/…`` -> t), else None."""
    if not _plain_path(key):
        return None
    if prefix:
        if not key.startswith(prefix):
            return None
        key = key[len(prefix) :]
    if not key.endswith(".jsonl.gz"):
        return None
    if key.startswith(RAW_PREFIX):
        return "events"
    if key.startswith(AGG_PREFIX):
        table = key[len(AGG_PREFIX) :].split("/", 1)[0]
        return table if table in TARGETS and table != "events" else None
    return None


def key_day(key: str) -> str | None:
    """The ``dt=YYYY-MM-DD`` partition of a key, or None."""
    at = key.find("/dt=")
    return key[at + 4 : at + 14] if at >= 0 else None


@dataclass
class Batch:
    """One S3 object: its JSON lines (bytes, unchanged), not parsed here.

    Parsing 50k lines in Python costs more than the whole COPY, so the warehouse checks
    them: COPY into ``jsonb`` rejects bad JSON, NOT NULL and casts reject wrong shapes, and
    the loader maps those errors to quarantine reasons (``dialect.data_error_reason``)."""

    key: str
    table: str
    lines: list[bytes]

    @property
    def rows(self) -> int:
        return len(self.lines)

    @property
    def size(self) -> int:
        return sum(len(line) for line in self.lines)

    def sample_received_at(self, count: int) -> list[str]:
        """``receivedAt`` of up to ``count`` lines spread over the batch (latency metric)."""
        if self.table != "events" or not self.lines:
            return []
        step = max(1, len(self.lines) // count)
        found = []
        for line in self.lines[::step][:count]:
            try:
                found.append(orjson.loads(line)["receivedAt"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue
        return [r for r in found if isinstance(r, str)]


def gunzip_capped(body: bytes, limit: int = MAX_OBJECT_BYTES) -> bytes:
    """Every gzip member of ``body`` inflated, never more than ``limit`` bytes in memory;
    raises ``CorruptBatch`` (``too_large``, ``bad_gzip``)."""
    parts: list[bytes] = []
    size, rest = 0, body
    try:
        while rest:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            part = inflater.decompress(rest, limit - size + 1)
            size += len(part)
            if size > limit or inflater.unconsumed_tail:
                raise CorruptBatch("too_large", f"inflates to over {limit} bytes")
            if not inflater.eof:
                raise CorruptBatch("bad_gzip", "truncated gzip member")
            parts.append(part)
            rest = inflater.unused_data
    except zlib.error as exc:
        raise CorruptBatch("bad_gzip", f"{type(exc).__name__}: {exc}") from exc
    return b"".join(parts)


def parse_batch(key: str, shape: str, body: bytes, limit: int = MAX_OBJECT_BYTES) -> Batch:
    """Decompress one object into its lines; raises ``CorruptBatch`` (bad_gzip, too_large, bad_json)."""
    raw = gunzip_capped(body, limit)
    if b"\x01" in raw or b"\x02" in raw:  # never in valid JSON; the stage's CSV uses them
        raise CorruptBatch("bad_json", "raw control characters")
    # valid JSON has no raw CR inside strings: as whitespace it is safe to blank out
    lines = [line for line in raw.replace(b"\r", b" ").split(b"\n") if line.strip()]
    return Batch(key, shape, lines)


def batch_from_rows(key: str, shape: str, rows: Iterable[dict[str, Any]]) -> Batch:
    """A batch built from rows in memory (e.g. the nightly job's output), checked as if read from S3."""
    return parse_batch(key, shape, gzip.compress(b"\n".join(orjson.dumps(r) for r in rows), mtime=0))
