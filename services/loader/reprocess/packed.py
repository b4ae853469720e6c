"""The first step's input lines, packed: what the shuffle by ``messageId`` sorts.

Every input of the job -- a raw event line, an assignments snapshot row, an identities row --
becomes one packed line ``<key JSON> TAB <tag> TAB <body>``, keyed as the first step groups:

- ``c`` a raw copy of an event, key ``messageId``: ``<n> TAB <k1> TAB <v1> ... TAB <raw line>``.
  The ``n`` pairs are the first step's output *if this copy is the message's only one*,
  already encoded (JSON key, JSON value, as the job's internal protocol writes them). Nearly
  every message has one copy, so its reducer writes these bytes as they are and never parses
  the event again (the ``Packer`` parsed it once, to check it as the loader does); a message
  with several copies parses its raw lines and deduplicates them.
- ``r`` the same, with ``<offset>,<length>,<path>`` in place of the raw line: where the local
  ``Packer`` stored it (a plain file of raw lines beside the packed ones). Only a message with
  several copies (~2%) reads its lines back; every other raw line stays out of the shuffle,
  which then sorts and splits ~150 bytes per line instead of ~660 (the raw line was 78% of
  the packed line). Local runs only: every task reads the run's own disk.
- ``s`` an assignments snapshot row, key ``["snapshot", user_key]``: the row's JSON.
- ``l`` an identities snapshot row (a link loaded from an earlier day), key its
  ``message_id``: the row's JSON.

Fields are split on TAB: ``orjson`` never writes a raw TAB (JSON escapes control characters
inside strings), so every field before the raw line is TAB-free; the raw line comes last and
keeps any TAB it has as whitespace. GNU ``sort -t TAB -k 1,1`` groups by the key alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import orjson

COPY, STORED_COPY, SNAPSHOT_ROW, LINK_ROW = b"c", b"r", b"s", b"l"
PACKED_STARTS = (b'"', b"[")  # a packed line starts with its JSON key; a raw row with "{"


class Copy(NamedTuple):
    """One raw copy of an event: its first-step output if alone (encoded), and its line (or,
    ``stored``, where the line lies: ``store_ref``)."""

    outputs: list[tuple[bytes, bytes]]
    raw: bytes
    stored: bool = False

    def line(self) -> bytes:
        """The raw line, read back from its store if it was stored."""
        if not self.stored:
            return self.raw
        offset, length, path = self.raw.split(b",", 2)
        fd = os.open(path, os.O_RDONLY)
        try:
            line = os.pread(fd, int(length), int(offset))
        finally:
            os.close(fd)
        if len(line) != int(length):
            raise OSError(f"{path!r} ends before byte {int(offset) + int(length)}")
        return line


class Row(NamedTuple):
    """A snapshot row: ``tag`` is ``SNAPSHOT_ROW`` or ``LINK_ROW``."""

    tag: bytes
    record: dict[str, Any]


def encode_pair(key: Any, value: Any) -> tuple[bytes, bytes]:
    return orjson.dumps(key), orjson.dumps(value)


def pack_copy(
    message_id: str, outputs: Iterable[tuple[Any, Any]], line: bytes, stored: bool = False
) -> bytes:
    """A ``c`` line, or with ``stored`` an ``r`` line (``line`` is then a ``store_ref``)."""
    encoded = [encode_pair(k, v) for k, v in outputs]
    head = b"".join(k + b"\t" + v + b"\t" for k, v in encoded)
    tag = STORED_COPY if stored else COPY
    return orjson.dumps(message_id) + b"\t" + tag + b"\t" + str(len(encoded)).encode() + b"\t" + head + line


def store_ref(path: bytes, offset: int, length: int) -> bytes:
    """Where a stored raw line lies: ``path`` is absolute (tasks run in other directories)."""
    return b"%d,%d,%s" % (offset, length, path)


def pack_row(key: Any, tag: bytes, line: bytes) -> bytes:
    return orjson.dumps(key) + b"\t" + tag + b"\t" + line


def is_packed(line: bytes) -> bool:
    return line[:1] in PACKED_STARTS


def read_packed(line: bytes | str) -> tuple[Any, Copy | Row]:
    """``(key, value)`` of a packed line (mrjob's reader of the first step's reducer)."""
    raw = line.encode() if isinstance(line, str) else line
    key, tag, body = raw.split(b"\t", 2)
    if tag != COPY and tag != STORED_COPY:
        return orjson.loads(key), Row(tag, orjson.loads(body))
    count, rest = body.split(b"\t", 1)
    n = int(count)
    if not n:
        return orjson.loads(key), Copy([], rest, tag == STORED_COPY)
    fields = rest.split(b"\t", 2 * n)
    outputs = [(fields[2 * i], fields[2 * i + 1]) for i in range(n)]
    return orjson.loads(key), Copy(outputs, fields[2 * n], tag == STORED_COPY)


def lone_output(line: bytes) -> list[bytes] | None:
    """The first reducer's output lines (``key TAB value``) for a message of this one copy,
    cut from the packed line's bytes -- nothing decoded; None for a line that is no copy
    (snapshot rows go through ``read_packed`` and ``steps.reduce_copies``)."""
    parts = line.split(b"\t", 3)
    if len(parts) < 4 or (parts[1] != COPY and parts[1] != STORED_COPY):
        return None
    n = int(parts[2])
    if not n:
        return []
    fields = parts[3].split(b"\t", 2 * n)
    return [fields[2 * i] + b"\t" + fields[2 * i + 1] for i in range(n)]


def grouped_output(
    lines: Iterable[bytes], reduce_group: Callable[[list[bytes]], list[bytes]], block: int = 4096
) -> Iterator[bytes]:
    """Sorted lines grouped by their key's bytes (the text before the first TAB: what GNU
    sort and Hadoop group by), each group's output lines from ``reduce_group``, yielded as
    newline-terminated blocks of about ``block`` lines (one write each, not two per line)."""
    out: list[bytes] = []
    group: list[bytes] = []
    key = None
    for line in lines:
        this = line[: line.find(b"\t")]
        if this != key and group:
            out.extend(reduce_group(group))
            group = []
            if len(out) >= block:
                out.append(b"")
                yield b"\n".join(out)
                out = []
        key = this
        group.append(line)
    if group:
        out.extend(reduce_group(group))
    if out:
        out.append(b"")
        yield b"\n".join(out)


def decoded(pair: tuple[Any, Any]) -> tuple[Any, Any]:
    """A step's output pair as objects (Spark groups objects; mrjob writes bytes as they are)."""
    key, value = pair
    if isinstance(key, bytes):
        return orjson.loads(key), orjson.loads(value)
    return key, value
