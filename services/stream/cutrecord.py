"""The changelog record of one cut (pure): every state entry the cut created, packed.

One record per cut instead of one Kafka record per entry (about three per event, each a
JSON key and value): the entries become fixed-width arrays -- 8-byte key hash, 8-byte
creating offset, 4-byte bucket tag -- 20 bytes an entry. A cut is split into chunks of at
most ``CHUNK_ENTRIES`` entries so that each record stays under the broker's default
``max.message.bytes`` (1 MB). Layout of a chunk::

    b"EPC1" | uint32 ids | uint32 members | uint16 n | high_received (n bytes, UTF-8)
    | hashes uint64[ids + members] | offsets int64[...] | tags uint32[...]   (little-endian)

the first ``ids`` entries are messageIds, the rest distinct-user marks.
"""

from __future__ import annotations

import struct

import numpy as np

MAGIC = b"EPC1"
HEADER = struct.Struct("<4sIIH")
CHUNK_ENTRIES = 32_768  # 20 bytes each: 640 KB, under Kafka's default 1 MB record limit

Entry = tuple[int, int, int]  # (key hash, creating offset, bucket tag)


class BadCutRecord(ValueError):
    """A changelog value that is not a cut record of this format."""


def encode(high_received: str, ids: list[Entry], members: list[Entry]) -> list[bytes]:
    """The chunks of one cut's record (at least one)."""
    high = high_received.encode()
    kinds = [(ids, True), (members, False)]
    entries = [(e, is_id) for group, is_id in kinds for e in group]
    chunks = []
    for start in range(0, max(len(entries), 1), CHUNK_ENTRIES):
        part = entries[start : start + CHUNK_ENTRIES]
        n_ids = sum(1 for _, is_id in part if is_id)
        rows = [e for e, _ in part]
        hashes = np.fromiter((h for h, _, _ in rows), dtype="<u8", count=len(rows))
        offsets = np.fromiter((o for _, o, _ in rows), dtype="<i8", count=len(rows))
        tags = np.fromiter((t for _, _, t in rows), dtype="<u4", count=len(rows))
        head = HEADER.pack(MAGIC, n_ids, len(rows) - n_ids, len(high))
        chunks.append(head + high + hashes.tobytes() + offsets.tobytes() + tags.tobytes())
    return chunks


def decode(value: bytes) -> tuple[str, list[Entry], list[Entry]]:
    """``(high_received, ids, members)`` of one chunk."""
    if len(value) < HEADER.size:
        raise BadCutRecord("cut record shorter than its header")
    magic, n_ids, n_members, n_high = HEADER.unpack_from(value)
    if magic != MAGIC:
        raise BadCutRecord(f"not a cut record (magic {magic!r})")
    n = n_ids + n_members
    at = HEADER.size + n_high
    if len(value) != at + 20 * n:
        raise BadCutRecord(f"cut record of {len(value)} bytes, its header says {at + 20 * n}")
    high = value[HEADER.size : at].decode()
    hashes = np.frombuffer(value, dtype="<u8", count=n, offset=at).tolist()
    offsets = np.frombuffer(value, dtype="<i8", count=n, offset=at + 8 * n).tolist()
    tags = np.frombuffer(value, dtype="<u4", count=n, offset=at + 16 * n).tolist()
    rows = list(zip(hashes, offsets, tags, strict=True))
    return high, rows[:n_ids], rows[n_ids:]
