"""S3 batches as the loader sees them (pure): which table a key feeds, a batch's lines
checked against the contract's shapes (docs/contracts.md §3), and the events dedup.

A batch that fails here is *corrupt*: it is quarantined with the reason, never retried
automatically and never allowed to block the batches behind it.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from eventpipe.definitions import canonical_first
from eventpipe.errors import EventpipeError
from eventpipe.keys import AGG_PREFIX, RAW_PREFIX
from eventpipe.loader.tables import BIGINT, DATE, TARGETS, TS, line_columns


class CorruptBatch(EventpipeError):
    """An object that can never load; ``reason`` is a stable code (bad_gzip, bad_json, bad_shape)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def table_of_key(key: str, prefix: str = "") -> str | None:
    """The target table of an S3 key (``raw/events/…`` -> events, ``agg/<t>/…`` -> t), else None."""
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
    """One S3 object, validated. ``lines`` are the raw JSON lines (bytes, unchanged)."""

    key: str
    table: str
    lines: list[bytes]
    docs: list[dict[str, Any]] = field(repr=False, default_factory=list)
    received_at: list[str] = field(repr=False, default_factory=list)  # events only

    @property
    def rows(self) -> int:
        return len(self.lines)

    @property
    def size(self) -> int:
        return sum(len(line) for line in self.lines)


def _check_value(doc: dict[str, Any], name: str, kind: str, required: bool) -> str | None:
    value = doc.get(name)
    if value is None:
        return f"missing {name}" if required else None
    if kind == BIGINT:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind in (DATE, TS):
        ok = isinstance(value, str) and len(value) >= 10
    elif kind == "json":
        ok = isinstance(value, dict | list)
    elif kind == "bool":
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    return None if ok else f"{name} has the wrong type"


def parse_batch(key: str, table: str, body: bytes) -> Batch:
    """Decompress and check every line of one object; raises ``CorruptBatch``."""
    try:
        raw = gzip.decompress(body)
    except (OSError, EOFError, zlib.error) as exc:
        raise CorruptBatch("bad_gzip", f"{type(exc).__name__}: {exc}") from exc
    columns = [(c.key, c.kind, c.not_null) for c in line_columns(table) if c.name != "is_final"]
    batch = Batch(key, table, [])
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise CorruptBatch("bad_json", f"line {number}: {exc}") from exc
        if not isinstance(doc, dict):
            raise CorruptBatch("bad_shape", f"line {number}: not a JSON object")
        for name, kind, required in columns:
            problem = _check_value(doc, name, kind, required)
            if problem:
                raise CorruptBatch("bad_shape", f"line {number}: {problem}")
        # valid JSON has no raw CR/LF inside strings: as whitespace they are safe to blank out
        batch.lines.append(line.replace(b"\r", b" "))
        batch.docs.append(doc)
        if table == "events":
            batch.received_at.append(doc["receivedAt"])
    return batch


def dedup_events(batches: Iterable[Batch]) -> list[bytes]:
    """One line per messageId over a group of event batches: the canonical copy (contracts §2).

    The warehouse merge then only has to compare against rows loaded earlier."""
    kept: dict[str, tuple[dict[str, Any], bytes]] = {}
    for batch in batches:
        for doc, line in zip(batch.docs, batch.lines, strict=True):
            mid = doc["messageId"]
            found = kept.get(mid)
            if found is None or canonical_first(found[0], doc) is doc:
                kept[mid] = (doc, line)
    return [line for _, line in kept.values()]


def newest_received_at(batches: Iterable[Batch]) -> str | None:
    """The newest ``receivedAt`` (ISO strings sort as time) over event batches."""
    newest = [max(b.received_at) for b in batches if b.received_at]
    return max(newest) if newest else None


def batch_from_rows(key: str, shape: str, rows: Iterable[dict[str, Any]]) -> Batch:
    """A batch built from rows in memory (e.g. the nightly job's output), checked as if read from S3."""
    return parse_batch(key, shape, gzip.compress(b"\n".join(orjson.dumps(r) for r in rows), mtime=0))
