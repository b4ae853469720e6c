"""The changelog records of one cut (pure): every state entry the cut created, packed, and
the assignments it set.

One record per cut instead of one Kafka record per entry (about three per event, each a
JSON key and value): the entries become fixed-width arrays -- 8-byte key hash, 8-byte
creating offset, 4-byte bucket tag -- 20 bytes an entry. A cut is split into chunks of at
most ``CHUNK_ENTRIES`` entries so that each record stays under the broker's default
``max.message.bytes`` (1 MB). Layout of a chunk::

    b"EPC3" | uint32 ids | uint32 members | uint16 n | high_received (n bytes, UTF-8)
    | hashes uint64[ids + members] | offsets int64[...] | tags uint32[...]   (little-endian)

the first ``ids`` entries are messageIds, the rest distinct-user marks.

``EPC1`` (before ``marks.mark_hash``) and ``EPC2`` records (blake2b, before XXH3-64) are still
read, for their ``high_received``; their entries hash with a function the fold no longer uses,
so no key could ever find them and they are left out (after an upgrade, for one dedup window,
duplicates of earlier events and users of the window's rows are counted once more in the
streamed rows; the nightly reprocess is final).
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson

MAGIC = b"EPC3"
MAGICS_BEFORE_XXH3 = (b"EPC1", b"EPC2")  # blake2b hashes: read, their entries left out
HEADER = struct.Struct("<4sIIH")
CHUNK_ENTRIES = 32_768  # 20 bytes each: 640 KB, under Kafka's default 1 MB record limit
ASSIGNMENTS_MAGIC = b"EPA1"
CHUNK_BYTES = 900 * 1024  # an assignment chunk's JSON at most (Kafka's default limit: 1 MB)

Entry = tuple[int, int, int]  # (key hash, creating offset, bucket tag)
# (user, experiment, variant, first exposure timestamp, creating offset), or (user, experiment)
# for an assignment that is gone (pruned, or replaced and pruned): a restore drops it
Assignment = tuple[str, str, str, str, int] | tuple[str, str]
Columns = tuple[np.ndarray, np.ndarray, np.ndarray]  # hashes, creating offsets, tags


class BadCutRecord(ValueError):
    """A changelog value that is not a cut record of this format."""


def columns(entries: list[Entry]) -> Columns:
    """Entries as the three arrays ``encode`` takes."""
    return (
        np.fromiter((h for h, _, _ in entries), dtype=np.uint64, count=len(entries)),
        np.fromiter((o for _, o, _ in entries), dtype=np.int64, count=len(entries)),
        np.fromiter((t for _, _, t in entries), dtype=np.int64, count=len(entries)),
    )


def encode(high_received: str, ids: Columns, members: Columns) -> list[bytes]:
    """The chunks of one cut's record (at least one). Each column is concatenated straight
    into its record dtype and each chunk joined from views of them: one copy into the
    columns and one into the chunk (a copy per ``astype``, ``tobytes`` and ``+`` before)."""
    high = high_received.encode()
    n_ids = len(ids[0])
    hashes, offsets, tags = (
        np.concatenate([a, b], dtype=dtype, casting="unsafe")  # tags: int64 -> uint32, as astype did
        for a, b, dtype in zip(ids, members, ("<u8", "<i8", "<u4"), strict=True)
    )
    chunks = []
    for start in range(0, max(len(hashes), 1), CHUNK_ENTRIES):
        end = min(start + CHUNK_ENTRIES, len(hashes))
        chunk_ids = max(0, min(end, n_ids) - start)
        head = HEADER.pack(MAGIC, chunk_ids, end - start - chunk_ids, len(high))
        chunks.append(b"".join((head, high, *(a[start:end].data for a in (hashes, offsets, tags)))))
    return chunks


def decode(value: bytes) -> tuple[str, list[Entry], list[Entry]]:
    """``(high_received, ids, members)`` of one chunk."""
    if len(value) < HEADER.size:
        raise BadCutRecord("cut record shorter than its header")
    magic, n_ids, n_members, n_high = HEADER.unpack_from(value)
    if magic != MAGIC and magic not in MAGICS_BEFORE_XXH3:
        raise BadCutRecord(f"not a cut record (magic {magic!r})")
    n = n_ids + n_members
    at = HEADER.size + n_high
    if len(value) != at + 20 * n:
        raise BadCutRecord(f"cut record of {len(value)} bytes, its header says {at + 20 * n}")
    high = value[HEADER.size : at].decode()
    if magic != MAGIC:
        return high, [], []
    hashes = np.frombuffer(value, dtype="<u8", count=n, offset=at).tolist()
    offsets = np.frombuffer(value, dtype="<i8", count=n, offset=at + 8 * n).tolist()
    tags = np.frombuffer(value, dtype="<u4", count=n, offset=at + 16 * n).tolist()
    rows = list(zip(hashes, offsets, tags, strict=True))
    return high, rows[:n_ids], rows[n_ids:]


def encode_assignments(assignments: list[Assignment]) -> list[bytes]:
    """The chunks of the record of the assignments one cut changed (at least one): ``EPA1``
    and a JSON list of ``[user, experiment, variant, timestamp, offset]`` (set) and
    ``[user, experiment]`` (gone), halved until each chunk is at most ``CHUNK_BYTES`` (one
    JSON encoding per cut in the common case, not one record per assignment)."""
    return [ASSIGNMENTS_MAGIC + body for body in _json_chunks(assignments, None)]


def _json_chunks(rows: list[Assignment], body: bytes | None) -> list[bytes]:
    """``rows``' JSON (``body`` if already made), halved until each part is at most
    ``CHUNK_BYTES``. A list's JSON is its halves' joined (``[a]`` and ``[b]`` make ``[a,b]``,
    one byte shorter than both), so the halves are encoded first: a list too large for one
    chunk (a 50k-event cut's ~12k changes, ~1 MB) is then encoded once, not whole and then
    again in halves, and the chunks are the same bytes."""
    if body is not None and (len(body) <= CHUNK_BYTES or len(rows) == 1):
        return [body]
    if len(rows) < 2:
        return [orjson.dumps(rows)]
    half = len(rows) // 2
    left, right = orjson.dumps(rows[:half]), orjson.dumps(rows[half:])
    if body is None and len(left) + len(right) - 1 <= CHUNK_BYTES:
        return [b"".join((memoryview(left)[:-1], b",", memoryview(right)[1:]))]
    return _json_chunks(rows[:half], left) + _json_chunks(rows[half:], right)


def decode_assignments(value: bytes) -> list[Assignment]:
    """The assignment changes of one chunk, in order; ``BadCutRecord`` for anything else."""
    if value[:4] != ASSIGNMENTS_MAGIC:
        raise BadCutRecord(f"not an assignment record (magic {value[:4]!r})")
    try:
        rows: Any = orjson.loads(value[4:])
    except orjson.JSONDecodeError as exc:
        raise BadCutRecord(f"assignment record: {exc}") from exc
    if not isinstance(rows, list) or not all(_is_change(row) for row in rows):
        raise BadCutRecord("assignment record: not a list of [user, experiment(, variant, ts, offset)]")
    return [tuple(row) for row in rows]


def _is_change(row: Any) -> bool:
    if not isinstance(row, list) or len(row) not in (2, 5):
        return False
    return all(isinstance(text, str) for text in row[:4]) and (len(row) == 2 or type(row[4]) is int)
