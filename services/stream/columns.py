"""A fetched run of Kafka values decoded and checked at once, as columns (pure, no I/O).

The columnar fold (``columnar.py``) reads these columns instead of one ``Folded`` tuple per
event. ``decode_run`` accepts a run only if *every* record is one the row path would fold
without complaint: a value ``parse_event`` accepts and an event ``PartitionState.extract``
can read. Anything else -- an empty value, invalid JSON, a missing or empty field, a
timestamp the pattern refuses, a user key or event name that is not a string, an impossible
date, malformed exposure properties -- makes it return ``None`` and the caller handles the
whole run on the row path, which sends each bad record where it goes today (``rejected/``).
So the fast path never decides what is valid: it only recognises the runs where the row
path's checks would all pass, using the same functions (``user_key``, ``engagement_name``,
``exposure_of``, the state's tag and day caches, ``records.TIMESTAMP``).

What the fold groups by (hour and day received, the counted day, the row name, the user) is
handed over as integer codes per record plus the distinct texts they stand for, so the fold
groups with array operations. When every timestamp has the collector's form the hour and day
codes come from the timestamps' bytes as one array (a text's prefix is its digits there), so
no per-record Python touches them; otherwise from the texts, record by record.

The values are decoded ``CHUNK`` at a time, as one JSON array in one call (a value holding
more than one JSON value is refused by the count), into ``Fields`` (msgspec: only the fields the run
reads are built, each of its type or the value is refused; every other field is skipped in C)
and each chunk's columns read at once (a tuple per event, transposed by ``zip``). msgspec's skip accepts two
things orjson (the row path) refuses: invalid UTF-8 in a skipped text and a number out of a
double's range (``1e400``); so each chunk is also checked whole by simdjson (``[v1,...,vn]``:
valid UTF-8, numbers in range, no Python objects built), and a chunk it refuses is checked by
orjson value by value, so a value takes this path only if orjson accepts it. ``Run.events``
decodes a value with orjson when asked, for the per-record path (about one record per cut).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Annotated, Any, cast

import msgspec
import numpy as np
import orjson
import simdjson

from eventpipe.definitions import ANY_EVENT, EXPOSURE_EVENT, Exposure, exposure_of
from eventpipe.stream.fold import PartitionState
from eventpipe.stream.records import REQUIRED_TEXT, TIMESTAMP
from eventpipe.textruns import each_fullmatches, run_of

Event = dict[str, Any]
Array = np.ndarray[Any, Any]
# What makes ``extract`` refuse an event (``batch.add_event`` rejects it as "unfoldable").
UNFOLDABLE = (AttributeError, KeyError, TypeError, ValueError)
# The name codes the fold relies on: 0 the "*" row, 1 exposures, 2 an event not counted.
NAME_CODES = (ANY_EVENT, EXPOSURE_EVENT, None)
UNCOUNTED = 2
_EXPOSURE_CODE = NAME_CODES.index(EXPOSURE_EVENT)
# the collector's timestamp form: "D" a digit, every other character fixed
CANONICAL = "DDDD-DD-DDTDD:DD:DD.DDDZ"
_DIGITS = [i for i, c in enumerate(CANONICAL) if c == "D"]
# ``_canonical``'s rows: each text and the newline after it, which no text may hold (the row
# count is then the text count, so no two texts of other lengths can make up a row)
_ROW = CANONICAL + "\n"
# a row less this, byte by byte (uint8, wrapping), is at most _MOST: 0-9 at a digit ("0"
# subtracted), 0 at a fixed character or the newline (itself subtracted); anything else above
_ZERO = np.frombuffer(_ROW.replace("D", "0").encode(), dtype=np.uint8)
_MOST = np.asarray([9 if c == "D" else 0 for c in _ROW], dtype=np.uint8)
# a row's digits as one number: the power of ten of each digit's place, 0 elsewhere
_POWERS = np.zeros(len(_ROW), dtype=np.int64)
_POWERS[_DIGITS] = 10 ** np.arange(len(_DIGITS) - 1, -1, -1, dtype=np.int64)
HOUR, DAY = len("YYYY-MM-DDTHH"), len("YYYY-MM-DD")
# TIMESTAMP's pattern (without its "$") for newline-separated texts, matched in one pass
RUN_OF_TIMESTAMPS = run_of(TIMESTAMP.pattern.removesuffix("$"))
_exposure_tuple = tuple.__new__  # an Exposure from a tuple, without its Python-level __new__
# Events are decoded and read CHUNK at a time and then dropped: read while they are still in
# the CPU cache (a pass over a whole fetch's misses it at every event; the run reads 7 fields
# in turn) and freed there too. ``Decoded`` decodes one again when asked.
CHUNK = 256


class Properties(msgspec.Struct, gc=False):
    """What the common exposure case reads of ``properties`` (any JSON value each; anything
    else, ``_exposure`` reads from the value decoded whole)."""

    experiment_id: Any = None
    variation_id: Any = None


Text = Annotated[str, msgspec.Meta(min_length=1)]  # a required field: a non-empty string


class Fields(msgspec.Struct, gc=False):
    """What the run reads of an event; a value of another type (a ``userId`` that is a number,
    ``properties`` that is not an object) makes the decoder refuse it: the row path decides."""

    messageId: Text  # the event's own field names
    receivedAt: Text
    timestamp: Text
    type: Text
    userId: str | None = None
    anonymousId: str | None = None
    event: str | None = None
    properties: Properties | None = None


# a chunk's values as one JSON array, decoded in one call (``_read``)
_CHUNK_FIELDS = msgspec.json.Decoder(list[Fields])
# ``_read`` takes a chunk's fields as columns by position: the required ones come first
if Fields.__struct_fields__[: len(REQUIRED_TEXT)] != REQUIRED_TEXT:
    raise ImportError("Fields must start with REQUIRED_TEXT, in its order")
_as_tuple = msgspec.structs.astuple
# ``engagement_name`` of a type other than "track": the row name (None: not engagement)
_UNTRACKED_NAME = {"page": "page", "screen": "screen"}


class Decoded:
    """A run's events, each decoded from its value when asked: only the per-record path reads
    them (the record before which a cut closes: about one per cut)."""

    def __init__(self, values: list[bytes | None]) -> None:
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, i: int) -> Event:
        event: Event = orjson.loads(self.values[i])  # type: ignore[arg-type]  # checked: not None
        return event


@dataclass
class Run:
    """Column ``i`` of each list or array belongs to the run's ``i``-th record; a ``*_code``
    column holds indexes into the texts beside it."""

    events: Decoded
    message_ids: list[str]
    received: list[str]  # receivedAt
    timestamps: list[str]
    # the timestamps as integers ordered as the texts are (``stamp_keys``), when all canonical
    stamp_keys: Array | None
    hours: list[int]  # tag of the hour received
    users: list[str | None]
    user_code: Array  # into ``user_texts`` (None has a code too)
    user_texts: list[str | None]
    name_code: Array  # engagement row name (NAME_CODES first); UNCOUNTED without a user or name
    name_texts: list[str | None]
    day_code: Array  # canonical UTC date of the timestamp, into ``day_texts``; -1 when not counted
    day_texts: list[str]
    day_tags: Array  # tag of ``day_texts[day_code]``; -1 when not counted
    received_day_code: Array  # receivedAt's YYYY-MM-DD, into ``received_days``
    received_days: list[str]
    exposures: dict[int, Exposure | None]  # index -> exposure, for events named EXPOSURE_EVENT


def decode_run(state: PartitionState, values: list[bytes | None]) -> Run | None:
    """The run as columns, or ``None`` if any record needs the row path (module docstring).
    Uses the state's tag and day caches only (they do not change what the fold computes)."""
    try:
        return _decode(state, values)
    # RecursionError: msgspec skips nested values with Python's recursion limit (1,000),
    # orjson's limit is 1,024: a value nested in between is the row path's to decide.
    except (orjson.JSONDecodeError, msgspec.DecodeError, RecursionError, *UNFOLDABLE):
        return None


def _decode(state: PartitionState, values: list[bytes | None]) -> Run | None:
    if None in values:
        return None
    read = _read(values)  # type: ignore[arg-type]  # None excluded above
    if read is None:
        return None
    required, users, names, props = read  # required: non-empty texts (``Fields``)
    message_ids, received, timestamps, _ = required
    received_keys, keys = _both_stamps(received, timestamps)
    if received_keys is None:
        valid, received_keys = checked_stamps(received)
        if not valid:
            return None
    if keys is None:
        valid, keys = checked_stamps(timestamps)
        if not valid:
            return None
    name_table = Codes((name, code) for code, name in enumerate(NAME_CODES))
    name_code = codes(names, name_table)
    exposures = exposures_by_index(name_code, props, values)  # type: ignore[arg-type]  # as _read
    user_table = Codes()
    user_code = codes(users, user_table)
    hour_code, hour_texts = _prefixes(received, received_keys, HOUR)
    hours = np.asarray([state._tag(h) for h in hour_texts], dtype=np.int64)[hour_code].tolist()
    received_days = Codes()
    received_day_code = codes([h[:DAY] for h in hour_texts], received_days)[hour_code]
    day_code, day_texts, day_tags = _counted_days(state, timestamps, keys, name_code)
    return Run(
        Decoded(values), message_ids, received, timestamps, keys, hours, users, user_code, list(user_table),
        name_code, list(name_table), day_code, day_texts, day_tags, received_day_code,
        list(received_days), exposures,
    )  # fmt: skip


Read = tuple[list[list[Any]], list[Any], list[Any], list[Properties | None]]


def _read(values: list[bytes]) -> Read | None:
    """What the run reads of its events, ``CHUNK`` events at a time: the ``REQUIRED_TEXT``
    columns, ``user_key``, the row name (``engagement_name``; None without a user) and the
    ``properties`` of each (``exposures_by_index`` reads the exposures' only). Raises
    (msgspec's errors, orjson's, UnicodeDecodeError) for a value that is not valid JSON as
    orjson reads it, is not an object, misses a required field or has one of another type
    than ``Fields``. Unchecked otherwise."""
    required: list[list[Any]] = [[] for _ in REQUIRED_TEXT]
    users: list[Any] = []
    names: list[Any] = []
    properties: list[Properties | None] = []
    parser = simdjson.Parser()
    for start in range(0, len(values), CHUNK):
        chunk = values[start : start + CHUNK]
        joined = b"[" + b",".join(chunk) + b"]"
        events = _CHUNK_FIELDS.decode(joined)
        if len(events) != len(chunk):  # a value holding several (``{..},{..}``): not one event
            raise ValueError("a value is not one JSON value")
        _check_as_orjson(parser, chunk, joined)
        # the chunk's columns in ``Fields``' order, transposed in C (a tuple per event, then zip)
        *texts, ids, anonymous, tracked, props = zip(*map(_as_tuple, events), strict=True)
        for column, text in zip(required, texts, strict=True):
            column.extend(text)
        mine = [u or a for u, a in zip(ids, anonymous, strict=True)]  # ``user_key``
        named = [
            None if u is None else x if k == "track" else _UNTRACKED_NAME.get(k)
            for u, k, x in zip(mine, texts[3], tracked, strict=True)
        ]
        users += mine
        names += named
        properties += props
    return required, users, names, properties


def exposures_by_index(
    name_code: Array, props: list[Properties | None], values: list[bytes]
) -> dict[int, Exposure | None]:
    """By index, ``exposure_of`` of each event whose row name is EXPOSURE_EVENT (its code in
    ``NAME_CODES``), found by one array pass over the run's name codes."""
    exposed = np.flatnonzero(name_code == _EXPOSURE_CODE).tolist()
    if not exposed:
        return {}
    found = _exposures(list(map(props.__getitem__, exposed)), map(values.__getitem__, exposed))
    return dict(zip(exposed, found, strict=True))


def _check_as_orjson(parser: simdjson.Parser, chunk: list[bytes], joined: bytes) -> None:
    """Raise unless orjson accepts every value of the chunk, each of which ``Fields`` decoded
    (so each is one JSON object by msgspec's grammar, which accepts what orjson refuses only
    as invalid UTF-8 or a number out of range where it skips). simdjson parses the chunk as
    one array, checking both without building objects; what it refuses (also integers beyond
    64 bits, which orjson accepts) orjson decides value by value. ``joined``: the chunk as
    that array."""
    try:
        parser.parse(joined)
    except (ValueError, RuntimeError):  # pysimdjson's errors: invalid JSON, and the others
        for value in chunk:
            orjson.loads(value)


class Codes(dict[Any, int]):
    """Texts to codes: a text missing gets the next code when looked up, so ``codes`` codes a
    column in one C-level pass (a Python call only per distinct text)."""

    def __missing__(self, value: Any) -> int:
        code = self[value] = len(self)
        return code


def codes(values: list[Any], table: Codes) -> Array:
    """Each value's code in ``table`` (new values get the next code, in order of appearance)."""
    return np.fromiter(map(table.__getitem__, values), np.int64, len(values))


def stamp_keys(texts: list[str]) -> Array | None:
    """Integers that order as the texts do, if every text has the canonical form: its 17
    digits as one number (the first differing character of two such texts is a digit at the
    same place; at most 17 digits fit in int64); else None (the regex decides)."""
    digits = _canonical(texts)
    if digits is None:
        return None
    key: Array = digits.astype(np.int64) @ _POWERS
    return key


def _prefixes(texts: list[str], keys: Array | None, length: int) -> tuple[Array, list[str]]:
    """A code per text for its first ``length`` characters, and the distinct prefixes.
    ``keys``: the texts' ``stamp_keys``, where equal prefixes are equal leading digits, so
    they are coded as integers (mostly a run of one hour and one day: checked first)."""
    if keys is None:
        table = Codes()
        return codes([t[:length] for t in texts], table), list(table)
    prefix = keys // 10 ** sum(i >= length for i in _DIGITS)
    if (prefix == prefix[0]).all():
        return np.zeros(len(texts), dtype=np.int64), [texts[0][:length]]
    _, first, inverse = np.unique(prefix, return_index=True, return_inverse=True)
    return inverse.reshape(-1), [texts[i][:length] for i in first.tolist()]


def _counted_days(
    state: PartitionState, timestamps: list[str], keys: Array | None, name_code: Array
) -> tuple[Array, list[str], Array]:
    """The canonical day of each counted record's timestamp (the state's ``_day``, which
    refuses an impossible date: only for counted records, as ``extract``): code, texts, tags;
    -1 for a record not counted."""
    stamp_code, stamp_days = _prefixes(timestamps, keys, DAY)
    counted = name_code != UNCOUNTED
    table = Codes()
    code_of = np.full(len(stamp_days), -1, dtype=np.int64)
    for code in np.unique(stamp_code[counted]).tolist():
        code_of[code] = table[state._day(stamp_days[code])]
    day_code = np.where(counted, code_of[stamp_code], -1)
    texts = list(table)
    # code -1 picks the appended -1: the tag of a record not counted
    tags = np.asarray([state._tag(day) for day in texts] + [-1], dtype=np.int64)[day_code]
    return day_code, texts, tags


def _both_stamps(received: list[str], timestamps: list[str]) -> tuple[Array | None, Array | None]:
    """``stamp_keys`` of both columns from one array pass when both are canonical (the
    collector's events); else (None, None): each is checked on its own."""
    keys = stamp_keys(received + timestamps)
    if keys is None:
        return None, None
    return keys[: len(received)], keys[len(received) :]


def checked_stamps(texts: list[str]) -> tuple[bool, Array | None]:
    """Whether ``all(TIMESTAMP.match(t) for t in texts)`` (the canonical bytes check, else the
    regex), and the texts' ``stamp_keys`` (None unless all canonical)."""
    keys = stamp_keys(texts)
    return keys is not None or _all_match(texts), keys


def _all_match(texts: list[str]) -> bool:
    """``all(TIMESTAMP.match(t) for t in texts)`` in one regex pass over the joined texts
    when none contains a newline (then each line must match the whole pattern, which is what
    ``match`` with ``$`` accepts of a text without one); else text by text."""
    in_one_pass = each_fullmatches(RUN_OF_TIMESTAMPS, texts)
    return all(map(TIMESTAMP.match, texts)) if in_one_pass is None else in_one_pass


def _exposures(props: list[Properties | None], values: Iterable[bytes]) -> list[Exposure | None]:
    """``exposure_of`` of each event (all tracks named EXPOSURE_EVENT) from its ``properties``:
    their common case as columns when every one has it (properties an object, both ids
    non-empty strings: then ``exposure_of`` returns exactly them), else from each value
    decoded whole."""
    if None not in props:
        # (experiment_id, variation_id), Exposure's order; every one a Properties (None not in)
        pairs = list(map(_as_tuple, cast("list[Properties]", props)))
        ids = list(chain.from_iterable(pairs))
        if set(map(type, ids)) == {str} and "" not in ids:
            return list(map(_exposure_tuple, repeat(Exposure), pairs))
    return [_exposure(orjson.loads(value)) for value in values]


def _exposure(event: Event) -> Exposure | None:
    """``exposure_of`` (for a track named EXPOSURE_EVENT), its common case inline: both ids
    non-empty strings (then ``exposure_of`` returns exactly them)."""
    props = event.get("properties")
    if type(props) is dict:
        experiment, variant = props.get("experiment_id"), props.get("variation_id")
        if type(experiment) is str and type(variant) is str and experiment and variant:
            return _exposure_tuple(Exposure, (experiment, variant))
    return exposure_of(event)


def _canonical(texts: list[str]) -> Array | None:
    """The texts as an array of bytes less ``_ZERO`` (a digit's value at its place, 0 at the
    others), one ``_ROW`` each, if every one is ``DDDD-DD-DDTDD:DD:DD.DDDZ`` with ASCII digits
    (the form the collector writes, which ``TIMESTAMP`` accepts); else None (the regex
    decides). Each text is followed by a newline: when every row ends with one and holds no
    other, the texts hold none, so the rows are the texts (no length checked per text)."""
    if not texts:
        return None
    try:
        raw = ("\n".join(texts) + "\n").encode("ascii")
    except UnicodeEncodeError:
        return None
    if len(raw) != len(texts) * len(_ROW):
        return None
    less: Array = np.frombuffer(raw, dtype=np.uint8).reshape(len(texts), len(_ROW)) - _ZERO
    return less if (less <= _MOST).all() else None
