"""Which raw lines the job may read: exactly those the warehouse could load (one definition).

The loader does not parse lines in Python: ``eventpipe.loader.batches.parse_batch`` splits an
object into lines (bad gzip, raw control characters -> quarantined), then PostgreSQL checks
them while loading ``events`` (COPY into ``jsonb``, NOT NULL columns, ``timestamptz`` casts)
and the loader maps its errors to the quarantine reasons ``bad_json``, ``bad_shape``,
``bad_value``. The job reproduces that here, from the same sources: ``parse_batch`` for the
split, and the loader's ``EVENTS`` table definition for which fields are required and which
are timestamps. So an object the loader quarantines is one the job refuses, for the same
reason, and a line the job reads is one the warehouse holds.

Known, deliberate narrowing: a timestamp must be ISO 8601 (``eventpipe.timeutil.parse_ts``,
what every stage writes); PostgreSQL would also take ``'infinity'`` or ``'Nov 26 2026'``,
which no stage produces and the rollups could not place on a day anyway.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from itertools import chain
from operator import itemgetter
from typing import Any

import orjson

from eventpipe.loader.batches import CorruptBatch, parse_batch
from eventpipe.loader.tables import EVENTS, TS
from eventpipe.textruns import each_fullmatches, run_of
from eventpipe.timeutil import parse_ts

# the loader's NOT NULL columns of ``events`` (messageId, type, source, timestamp, receivedAt)
REQUIRED = tuple(c.key for c in EVENTS.columns if c.not_null)
# its ``timestamptz`` columns: cast when present, so a value that does not parse is bad_value
TIMESTAMPS = tuple(c.key for c in EVENTS.columns if c.kind == TS)
# jsonb refuses the escaped NUL character (an escaped backslash before "u0000" is fine)
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
# what ``timeutil.format_ts`` writes
_WRITTEN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
# the written form with its time fields in range: such a value parses exactly when its date does
_IN_RANGE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\.[0-9]{3}Z"
_ALL_IN_RANGE = run_of(_IN_RANGE)
_required = itemgetter(*REQUIRED)


def record_problem(record: Any) -> tuple[str, str] | None:
    """``(reason, detail)`` if the loader would refuse this parsed line, else None."""
    if not isinstance(record, dict):
        return "bad_shape", f"a JSON {type(record).__name__}, not an object"
    for key in REQUIRED:
        if record.get(key) is None:
            return "bad_shape", f"{key} is missing"
    for key in TIMESTAMPS:
        value = record.get(key)
        if value is not None and not _is_timestamp(value):
            return "bad_value", f"{key} is not an ISO 8601 timestamp: {str(value)[:60]!r}"
    return None


def _is_timestamp(value: Any) -> bool:
    """Whether ``parse_ts`` takes ``value``. The form every stage writes (``…T…:….mmmZ``) is
    UTC already, so only its date and time fields can be wrong: checked without building an
    aware datetime (the hot path: four per raw line)."""
    try:
        if isinstance(value, str) and _WRITTEN.fullmatch(value):
            datetime.fromisoformat(value[:-1])
        else:
            parse_ts(value)
    except (ValueError, TypeError, OverflowError):
        return False
    return True


def all_loadable(records: list[Any]) -> bool:
    """True if ``record_problem`` finds nothing in any of ``records`` -- the hot path, every
    line of a good object, checked in a few C-level passes instead of a Python call per field
    (the per-record check cost ~4 CPU-µs per line, a fifth of the job's packing). False means
    "maybe not": ``record_problem`` decides, record by record."""
    try:
        if None in chain.from_iterable(map(_required, records)):  # KeyError/TypeError: no dict
            return False
        stamps = [v for v in (r.get(k) for r in records for k in TIMESTAMPS) if v is not None]
        if not stamps:
            return True
        if not each_fullmatches(_ALL_IN_RANGE, stamps):  # None (a newline in a value): maybe not
            return False
    except (KeyError, TypeError):  # TypeError: a value that is no string
        return False
    try:
        for day in {stamp[:10] for stamp in stamps}:  # a few distinct dates per object
            date.fromisoformat(day)
    except ValueError:
        return False
    return True


def parse_line(line: bytes | str) -> tuple[Any, tuple[str, str] | None]:
    """The parsed line and None, or None and ``("bad_json", detail)`` where jsonb refuses it."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return None, ("bad_json", str(exc)[:200])
    raw = line.encode() if isinstance(line, str) else line
    if b"u0000" in raw and _JSON_NUL.search(raw):
        return None, ("bad_json", "\\u0000 in a string (jsonb refuses it)")
    return record, None


def line_problem(line: bytes | str) -> tuple[str, str] | None:
    """``(reason, detail)`` if the loader would refuse this raw line (one of
    ``parse_batch``'s lines: not blank, no raw CR), else None."""
    record, problem = parse_line(line)
    return problem or record_problem(record)


def event_records(key: str, body: bytes) -> list[tuple[bytes, dict[str, Any]]]:
    """The lines of one raw object, split as the loader splits them, each with its parsed
    event; raises ``CorruptBatch`` (``bad_gzip``, ``bad_json``, ``bad_shape``, ``bad_value``)
    if the loader would quarantine it -- a whole object: the warehouse loads all of its lines
    or none."""
    batch = parse_batch(key, "events", body)
    out: list[tuple[bytes, dict[str, Any]]] = []
    unparsed: tuple[int, tuple[str, str]] | None = None
    for number, line in enumerate(batch.lines, 1):
        record, problem = parse_line(line)
        if problem is not None:
            unparsed = number, problem
            break
        out.append((line, record))
    if unparsed is None and all_loadable([record for _, record in out]):
        return out
    for number, (_, record) in enumerate(out, 1):  # the first problem in line order
        problem = record_problem(record)
        if problem is not None:
            raise CorruptBatch(problem[0], f"line {number}: {problem[1]}")
    if unparsed is not None:
        number, (reason, detail) = unparsed
        raise CorruptBatch(reason, f"line {number}: {detail}")
    return out


def event_lines(key: str, body: bytes) -> list[bytes]:
    """``event_records`` without the parsed events."""
    return [line for line, _ in event_records(key, body)]
