"""Strict JSON: every trap of Python's json module is a clear InvalidInput."""

from __future__ import annotations

import pytest
from hypothesis import given
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
