"""Hypothesis strategies for hostile Segment messages: lone surrogates and calendar edges.

Python's ``json`` decodes ``"\\ud800"`` into a str that cannot be encoded to UTF-8, and
``datetime`` arithmetic overflows near years 1 and 9999; both reached the collector as
500s. These strategies put them in every field a client controls, for the unit fuzzers
(``collect()``), the fuzzer against a real collector and schemathesis (tests/faults).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from hypothesis import strategies as st

SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
# text that is sometimes plain, sometimes carries a lone surrogate somewhere
hostile_text = st.one_of(
    st.text(max_size=8),
    st.builds(lambda a, s, b: a + s + b, st.text(max_size=4), SURROGATES, st.text(max_size=4)),
    st.sampled_from(["\ud800", "\udfff", "u\udc00", "[/bold]", "\x1b[31m", ""]),
)

CALENDAR_EDGES = [
    "0001-01-01T00:00:00+01:00",  # to UTC: year 0 (the reviewer's OverflowError)
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+14:00",
    "0001-01-01T00:00:00-23:59",
    "9999-12-31T23:59:59.999999-12:00",  # to UTC: year 10000
    "9999-12-31T23:59:59Z",
    "2024-02-29T12:00:00Z",
    "2023-02-29T12:00:00Z",  # no such day
    "2026-12-31T23:59:60Z",  # leap second: Python refuses it
    "1970-01-01T00:00:00Z",
]
_offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
calendar_edge_time = st.one_of(
    st.sampled_from(CALENDAR_EDGES),
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(1, 1, 3), timezones=_offsets).map(
        datetime.isoformat
    ),
    st.datetimes(
        min_value=datetime(9999, 12, 29), max_value=datetime(9999, 12, 31, 23, 59), timezones=_offsets
    ).map(datetime.isoformat),
    st.datetimes(timezones=st.none() | _offsets).map(datetime.isoformat),
)

_ids = st.one_of(st.none(), hostile_text, st.integers(-(2**63), 2**63))
_objects = st.one_of(st.none(), st.dictionaries(hostile_text, hostile_text | st.integers(), max_size=3))
_times = st.one_of(st.none(), calendar_edge_time)

hostile_message = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["track", "identify", "page", "screen", "group", "alias", "nope"]),
        "userId": _ids,
        "anonymousId": _ids,
        "previousId": _ids,
        "groupId": _ids,
        "messageId": _ids,
        "event": hostile_text,
        "name": hostile_text,
        "timestamp": _times,
        "sentAt": _times,
        "properties": _objects,
        "traits": _objects,
        "context": _objects,
        "writeKey": hostile_text,
    },
)
hostile_batch = st.fixed_dictionaries(
    {"batch": st.lists(hostile_message, min_size=1, max_size=4)},
    optional={"sentAt": _times, "context": _objects, "writeKey": hostile_text},
)


def wire(body: object) -> bytes:
    """The JSON a client would send: lone surrogates as ``\\udxxx`` escapes (valid JSON text)."""
    return json.dumps(body, ensure_ascii=True).encode()
