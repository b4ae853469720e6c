"""Strict JSON: every trap of Python's json module is a clear InvalidInput."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from eventpipe import strictjson
from eventpipe.errors import InvalidInput
from eventpipe.ingest.collect import encode_event


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"a": NaN}', "NaN"),
        (b'{"a": Infinity}', "Infinity"),
        (b'{"a": -Infinity}', "Infinity"),
        (b'{"a": 1, "a": 2}', "duplicate key"),
        (b'{"a": ' + b"9" * 10_000 + b"}", "too long"),
        (b'{"a": 1e999}', "out of range"),
        (b'{"a": "\xff"}', "UTF-8"),
        (b"[" * 100 + b"]" * 100, "nested deeper"),
        (b"[" * 100_000 + b"]" * 100_000, "nested deeper"),
        (b'{"a": ', "malformed"),
        (b"", "malformed"),
    ],
)
def test_traps_are_rejected_clearly(body, fragment):
    with pytest.raises(InvalidInput) as info:
        strictjson.loads(body, max_depth=32)
    assert fragment in info.value.detail


def test_lone_surrogate_is_rejected_when_encoding_the_event():
    value = strictjson.loads(b'{"a": "\\ud800"}')
    with pytest.raises(InvalidInput):
        encode_event(value, 32 * 1024)


def test_nesting_at_the_limit_is_fine():
    assert strictjson.loads(b"[" * 32 + b"]" * 32, max_depth=32) == eval("[" * 32 + "]" * 32)


@pytest.mark.parametrize(
    ("body", "max_depth", "fine"),
    [
        (b"[" * 33 + b"]" * 33, 32, False),  # one bracket more than allowed: walked, refused
        (b'{"a": {"b": [1]}}', 3, True),  # no more brackets than allowed: no walk needed
        (b'{"a": {"b": [1]}}', 2, False),
        (b'{"s": "[[[[", "a": {"b": 1}}', 2, True),  # brackets in a string: walked, fine
        (b'{"s": "[[[[", "a": {"b": [1]}}', 2, False),
    ],
)
def test_depth_is_judged_on_containers_whatever_the_brackets_in_strings(body, max_depth, fine):
    assert outcome(strictjson.loads, body, max_depth)[0] == ("ok" if fine else "error")
    assert outcome(strictjson.loads, body, max_depth) == outcome(strictjson.strict_loads, body, max_depth)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**15), 10**15)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=30,
)


@given(json_values)
def test_valid_json_round_trips(value):
    import json

    assert strictjson.loads(json.dumps(value).encode(), max_depth=64) == value


# JSON texts as a client could write them, tricky parts included: keys from a tiny alphabet
# (duplicates are frequent), ints past 64 bits, long and out-of-range numbers, NaN, escaped
# colons and quotes, lone surrogates, brackets inside strings, nesting around the limit.
scalar_texts = st.one_of(
    st.integers(-(10**25), 10**25).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["1e999", "-1e999", "NaN", "Infinity", "1" * 41, "1." + "0" * 39, "-0", "0.1e-400"]),
    st.sampled_from(["true", "false", "null", '"\\u003a"', '"a\\"b"', '"\\ud800"', '"[[{"', '"\\\\"']),
    st.sampled_from(['"]]}:"', '"\\u005b\\u003A"', '"a\\\\:"', '"\\/[\\t]"', '"0000000000000000000"']),
    st.text(max_size=12).map(lambda s: json.dumps(s, ensure_ascii=False)),
    st.text(max_size=12).map(json.dumps),
)
keys = st.sampled_from(['"a"', '"b"', '"a\\u003a"', '"a\\u003A"', '"a:"', '"\\u0061"', '"[a]"'])
json_texts = st.recursive(
    scalar_texts,
    lambda children: (
        st.lists(children, max_size=4).map(lambda items: "[" + ", ".join(items) + "]")
        | st.lists(st.tuples(keys, children), max_size=4).map(
            lambda pairs: "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"
        )
    ),
    max_leaves=40,
)


def outcome(decode, body: bytes, max_depth: int) -> tuple:
    try:
        return ("ok", repr(decode(body, max_depth)))  # repr tells 1 from 1.0 and -0.0 from 0
    except InvalidInput as exc:
        return ("error", exc.reason, exc.detail)


@settings(max_examples=400)
@given(json_texts, st.integers(1, 6))
@example('{"a\\u003A": 1, "a": 2, "a": 3}', 3)  # an escaped colon in capitals, a key lost: as many ":"
@example("[" * 5 + "{}" + "]" * 5, 5)  # one "{" only, and too deep
def test_the_fast_path_answers_exactly_as_the_reference_decoder(text, max_depth):
    body = text.encode("utf-8", "surrogatepass")
    assert outcome(strictjson.loads, body, max_depth) == outcome(strictjson.strict_loads, body, max_depth)


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": 1, "a": 2}',
        b'{"a": 1, "a\\u003a": 2, "a:": 3}',
        b'{"a\\u003A": 1, "a": 2, "a": 3}',
        b'{"a": 9223372036854775808}',
        b'{"a": -9223372036854775809}',
        b'{"a": 1.0000000000000000000000000000000000000001}',
        b'{"a": "\\ud800"}',
        b"[" * 33 + b"]" * 33,
    ],
)
def test_what_the_fast_path_cannot_vouch_for_goes_to_the_reference(body):
    with pytest.raises(strictjson._Unsure):
        strictjson._fast_loads(body, 32)
    assert outcome(strictjson.loads, body, 32) == outcome(strictjson.strict_loads, body, 32)


def test_ordinary_batches_take_the_fast_path():
    events = [
        {
            "type": "track",
            "userId": f"user-{i}",
            "event": "Product Viewed",
            "messageId": f"9f1c2a4e-{i:04d}-4b7e-9d2a-5c3e1f0a7b6d",
            "timestamp": "2026-11-26T10:00:00.000Z",
            "properties": {"price": 19.99, "quantity": i, "tags": ["a", "b"], "ratio": 0.30000000000000004},
            "context": {"library": {"name": "analytics.js", "version": "4.1.0"}, "page": {"path": "/p"}},
        }
        for i in range(100)
    ]
    for body in (
        orjson.dumps({"batch": events, "sentAt": "2026-11-26T10:00:00.000Z"}),
        json.dumps({"batch": events[:3]}, ensure_ascii=True, indent=2).encode(),
        b'{"userId": "u\\u00e9", "event": "a [b] {c}: d", "properties": {"id": 123456789012345678}}',
    ):
        assert strictjson._fast_loads(body, 32) == strictjson.strict_loads(body, 32)
