"""``columns._read`` (msgspec ``Fields`` + the simdjson chunk check) against what the row path
reads of the same value with orjson: whenever ``_read`` accepts a value, orjson accepts it and
every field the run takes from it is the same. The oracle is orjson plus the definitions'
own functions (``user_key``, ``engagement_name``, ``exposure_of``), not the code judged.

The values are events with the odd corners of JSON the two decoders treat differently spliced
into them: invalid UTF-8 in a text, numbers out of a double's range or beyond 64 bits,
duplicate keys, escapes, deep nesting, fields of other types.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from eventpipe.definitions import EXPOSURE_EVENT, engagement_name, exposure_of
from eventpipe.events import user_key
from eventpipe.stream import columns
from eventpipe.stream.records import REQUIRED_TEXT

TS = "2026-11-25T10:00:00.000Z"
ODD = [
    b'"\xff"', b'"\xc0\xaf"', b'"\xed\xa0\x80"', b'"\xf4\x90\x80\x80"', b'"\xc3"', b'"\\ud800"',
    b'"\\ud83d\\ude00"', b'"\\u0000"', b'"\xc3\xa9"', b'"a\\"b"',
    b"1e400", b"-1e400", b"1E+309", b"1.7976931348623159e308", b"1.7976931348623157e308",
    b"1e-400", b"1" * 400, b"1" * 309 + b".5", b"123456789012345678901234567890",
    b"18446744073709551616", b"-0", b"0.5e1", b"NaN", b"Infinity", b"01",
    b"[" * 300 + b"]" * 300, b"[" * 1010 + b"]" * 1010, b"[" * 1100 + b"]" * 1100,
    b"{}", b"[]", b"null", b"true", b"7", b'""',
    b'{"experiment_id": "e", "variation_id": "v"}', b'{"experiment_name": "e", "variation_id": 3}',
]  # fmt: skip
PAGE = b'{"messageId":"m","receivedAt":"a","timestamp":"b","type":"page","userId":"u",'
KEYS = ["messageId", "receivedAt", "timestamp", "type", "userId", "anonymousId", "event",
        "properties", "context", "traits", "experiment_id", "variation_id", "z"]  # fmt: skip


@st.composite
def values(draw: Any) -> bytes:
    """An event as the collector writes it, then fields set to odd JSON texts (spliced as
    bytes, so orjson's dumps cannot tidy them), duplicated, or the text cut or byte-flipped."""
    event = {
        "type": draw(st.sampled_from(["track", "page", "screen", "identify", ""])),
        "event": draw(st.sampled_from(["Signed Up", EXPOSURE_EVENT, "*"])),
        "messageId": draw(st.sampled_from(["m1", "9b08923d-10c6-4fd9-94b2-b8fda02f34a6", ""])),
        "receivedAt": TS,
        "timestamp": TS,
        draw(st.sampled_from(["userId", "anonymousId"])): draw(st.sampled_from(["u", "", None])),
        "properties": {"experiment_id": "e1", "variation_id": "v1", "price": 1.5},
        "context": {"ip": "1.2.3.4"},
    }
    for name in draw(st.lists(st.sampled_from(KEYS), max_size=3)):
        event.pop(name, None)
    text = orjson.dumps(event)[:-1]
    for name, odd in draw(st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from(ODD)), max_size=3)):
        nested = draw(st.booleans())
        field = b'"%s":%s' % (name.encode(), odd)
        text += b',"properties":{%s}' % field if nested else b"," + field
    text += b"}"
    if draw(st.integers(0, 9)) == 0:  # a byte replaced
        i = draw(st.integers(0, len(text) - 1))
        text = text[:i] + bytes([draw(st.integers(0, 255))]) + text[i + 1 :]
    if draw(st.integers(0, 19)) == 0:
        text = text[: draw(st.integers(0, len(text)))]
    return text


def orjson_fields(value: bytes) -> tuple[Any, ...] | None:
    """What the run takes from a value, read the row path's way; None if orjson refuses it,
    it is not an object or misses a required field."""
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if type(event) is not dict or not all(name in event for name in REQUIRED_TEXT):
        return None
    user = user_key(event)
    name = None if user is None else engagement_name(event)
    exposure = exposure_of(event) if name == EXPOSURE_EVENT else None
    return tuple(event[n] for n in REQUIRED_TEXT), user, name, exposure


def read_fields(value: bytes) -> tuple[Any, ...] | None:
    try:
        read = columns._read([value])
        if read is None:
            return None
        required, users, names, props = read
        name_code = columns.codes(names, columns.Codes((n, c) for c, n in enumerate(columns.NAME_CODES)))
        exposures = columns.exposures_by_index(name_code, props, [value])
    except (ValueError, RecursionError, *columns.UNFOLDABLE):  # msgspec's, orjson's; deep nesting
        return None
    return tuple(c[0] for c in required), users[0], names[0], exposures.get(0)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values())
@example(PAGE + b'"z":"\xff"}')
@example(PAGE + b'"z":1e400}')
@example(PAGE + b'"z":' + b"9" * 400 + b"}")
def test_what_the_run_reads_of_a_value_is_what_orjson_reads(value: bytes) -> None:
    read = read_fields(value)
    if read is not None:
        assert read == orjson_fields(value)


@settings(max_examples=300, deadline=None)
@given(st.lists(values(), min_size=1, max_size=8), st.sampled_from([1, 3, columns.CHUNK]))
def test_a_chunk_is_accepted_only_if_orjson_accepts_each_value(chunk: list[bytes], size: int) -> None:
    saved, columns.CHUNK = columns.CHUNK, size
    try:
        columns._read(chunk)
        accepted = True
    except (ValueError, RecursionError, *columns.UNFOLDABLE):
        accepted = False
    finally:
        columns.CHUNK = saved
    if accepted:
        assert all(orjson_fields(v) is not None for v in chunk)


def test_valid_events_are_read_on_this_path() -> None:
    """Not vacuous: the collector's events, odd but valid numbers and non-ASCII text included,
    are read here (big integers too, via orjson, when simdjson refuses a chunk)."""
    base = b'{"messageId":"m","receivedAt":"%s","timestamp":"%s","type":"track","event":"%s",' % (
        TS.encode(),
        TS.encode(),
        EXPOSURE_EVENT.encode(),
    )
    for extra in [b'"userId":"u"', b'"userId":"\xc3\xa9","z":1e300', b'"anonymousId":"a","z":' + b"1" * 30]:
        value = base + extra + b',"properties":{"experiment_id":"e","variation_id":"v"}}'
        assert read_fields(value) == orjson_fields(value) is not None


def test_a_value_holding_two_events_is_refused() -> None:
    """A chunk is decoded as one JSON array of its values joined by commas: a value that is
    two objects separated by a comma (invalid alone, which orjson refuses) must not pass as
    two events, whatever its place in the chunk."""
    event = PAGE + b'"z":1}'
    two = event + b"," + event
    assert orjson_fields(two) is None
    for chunk in ([two], [event, two], [two, event], [event, two, event]):
        try:
            columns._read(chunk)
            accepted = True
        except (ValueError, RecursionError, *columns.UNFOLDABLE):
            accepted = False
        assert not accepted, chunk


# the collector's form, spelled out independently of ``columns.CANONICAL``
COLLECTOR_FORM = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")


@st.composite
def stamp_columns(draw: Any) -> list[str]:
    """Texts that join to canonical timestamps but are cut elsewhere (lengths that make up for
    each other: ``2026-11-25T10:00:00.000`` then ``Z2026-11-25T10:00:00.000Z``), newlines put
    in or between, or a digit changed; mostly whole canonical texts."""
    stamps = draw(
        st.lists(
            st.sampled_from([TS, "1999-01-31T23:59:59.999Z", "2026-12-03T16:51:13.996Z"]),
            min_size=1,
            max_size=5,
        )
    )
    joined = "".join(stamps)
    if draw(st.booleans()):  # re-cut into as many texts, somewhere else
        cuts = sorted(
            draw(st.lists(st.integers(0, len(joined)), min_size=len(stamps) - 1, max_size=len(stamps) - 1))
        )
        stamps = [joined[a:b] for a, b in zip([0, *cuts], [*cuts, len(joined)], strict=True)]
    if draw(st.integers(0, 3)) == 0:
        i = draw(st.integers(0, len(stamps) - 1))
        j = draw(st.integers(0, len(stamps[i])))
        odd = draw(st.sampled_from(["\n", "7", "\u0663", "Z"]))
        stamps[i] = stamps[i][:j] + odd + stamps[i][j + draw(st.integers(0, 1)) :]
    return stamps


@settings(max_examples=1000, deadline=None)
@given(stamp_columns())
def test_stamp_keys_are_given_only_for_texts_each_of_the_collectors_form(texts: list[str]) -> None:
    """``stamp_keys`` (one byte array of the texts) gives keys iff every text is itself of
    the collector's form, and each key is that text's digits: texts whose lengths make up for
    each other, or that hold a newline, must not pass as rows of the right length."""
    keys = columns.stamp_keys(texts)
    if all(COLLECTOR_FORM.fullmatch(t) for t in texts):
        assert keys is not None
        assert keys.tolist() == [int(re.sub("[^0-9]", "", t)) for t in texts]
    else:
        assert keys is None


def test_stamp_keys_refuse_texts_that_only_join_to_canonical_ones() -> None:
    assert columns.stamp_keys([TS[:-1], "Z" + TS]) is None
    assert columns.stamp_keys([TS + "\n" + TS[:-1], ""]) is None
    assert columns.stamp_keys([TS, TS]) is not None
