"""The first step's input lines, packed: what the shuffle by ``messageId`` sorts.

Every input of the job -- a raw event line, an assignments snapshot row, an identities row --
becomes one packed line ``<key JSON> TAB <tag> TAB <body>``, keyed as the first step groups:

- ``c`` a raw copy of an event, key ``messageId``: ``<n> TAB <k1> TAB <v1> ... TAB <raw line>``.
  The ``n`` pairs are the first step's output *if this copy is the message's only one*,
  already encoded (JSON key, JSON value, as the job's internal protocol writes them). Nearly
  every message has one copy, so its reducer writes these bytes as they are and never parses
  the event again (the ``Packer`` parsed it once, to check it as the loader does); a message
  with several copies parses its raw lines and deduplicates them.
- ``s`` an assignments snapshot row, key ``["snapshot", user_key]``: the row's JSON.
- ``l`` an identities snapshot row (a link loaded from an earlier day), key its
  ``message_id``: the row's JSON.

Fields are split on TAB: ``orjson`` never writes a raw TAB (JSON escapes control characters
inside strings), so every field before the raw line is TAB-free; the raw line comes last and
keeps any TAB it has as whitespace. GNU ``sort -t TAB -k 1,1`` groups by the key alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import orjson

COPY, SNAPSHOT_ROW, LINK_ROW = b"c", b"s", b"l"
PACKED_STARTS = (b'"', b"[")  # a packed line starts with its JSON key; a raw row with "{"


class Copy(NamedTuple):
    """One raw copy of an event: its first-step output if alone (encoded), and its line."""

    outputs: list[tuple[bytes, bytes]]
    raw: bytes


class Row(NamedTuple):
    """A snapshot row: ``tag`` is ``SNAPSHOT_ROW`` or ``LINK_ROW``."""

    tag: bytes
    record: dict[str, Any]


def encode_pair(key: Any, value: Any) -> tuple[bytes, bytes]:
    return orjson.dumps(key), orjson.dumps(value)


def pack_copy(message_id: str, outputs: Iterable[tuple[Any, Any]], line: bytes) -> bytes:
    encoded = [encode_pair(k, v) for k, v in outputs]
    head = b"".join(k + b"\t" + v + b"\t" for k, v in encoded)
    return orjson.dumps(message_id) + b"\t" + COPY + b"\t" + str(len(encoded)).encode() + b"\t" + head + line


def pack_row(key: Any, tag: bytes, line: bytes) -> bytes:
    return orjson.dumps(key) + b"\t" + tag + b"\t" + line


def is_packed(line: bytes) -> bool:
    return line[:1] in PACKED_STARTS


def read_packed(line: bytes | str) -> tuple[Any, Copy | Row]:
    """``(key, value)`` of a packed line (mrjob's reader of the first step's reducer)."""
    raw = line.encode() if isinstance(line, str) else line
    key, tag, body = raw.split(b"\t", 2)
    if tag != COPY:
        return orjson.loads(key), Row(tag, orjson.loads(body))
    count, rest = body.split(b"\t", 1)
    n = int(count)
    if not n:
        return orjson.loads(key), Copy([], rest)
    fields = rest.split(b"\t", 2 * n)
    return orjson.loads(key), Copy([(fields[2 * i], fields[2 * i + 1]) for i in range(n)], fields[2 * n])


def decoded(pair: tuple[Any, Any]) -> tuple[Any, Any]:
    """A step's output pair as objects (Spark groups objects; mrjob writes bytes as they are)."""
    key, value = pair
    if isinstance(key, bytes):
        return orjson.loads(key), orjson.loads(value)
    return key, value
