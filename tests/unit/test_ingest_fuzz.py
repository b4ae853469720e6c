"""Hostile input never escapes ``collect()`` or the auth lookup as anything but InvalidInput.

Each named case was a 500 in the outside review (docs/security.md); the hypothesis tests
put lone surrogates and calendar-edge datetimes into every field a client controls.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventpipe import strictjson
from eventpipe.errors import InvalidInput
from eventpipe.ingest.auth import source_for
from eventpipe.ingest.collect import RequestInfo, collect
from tests.support.hostile import hostile_batch, hostile_message, hostile_text, wire

INFO = RequestInfo(datetime(2026, 11, 26, tzinfo=UTC), "dev", "127.0.0.1", 32 * 1024, 2500)
KEYS = {"dev-write-key": "dev"}


def decoded(body: object) -> object:
    """What the collector's JSON decoder makes of the body a client sends."""
    return strictjson.loads(wire(body))


@pytest.mark.parametrize("field", ["userId", "anonymousId"])
def test_lone_surrogate_id_on_track_is_a_400(field):
    with pytest.raises(InvalidInput) as caught:
        collect(decoded({field: "\ud800", "event": "e"}), "track", INFO)
    assert caught.value.reason == "invalid_json"


def test_lone_surrogate_id_in_a_batch_rejects_only_that_event():
    body = decoded({"batch": [{"type": "track", "userId": "u", "event": "e"},
                              {"type": "track", "anonymousId": "a\udfff", "event": "e"}]})  # fmt: skip
    out = collect(body, None, INFO)
    assert len(out.records) == 1
    assert [(r.index, r.reason) for r in out.rejected] == [(1, "invalid_json")]


@pytest.mark.parametrize("sent_at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-12:00"])
def test_batch_sent_at_off_the_calendar_is_a_400(sent_at):
    body = decoded({"batch": [{"type": "track", "userId": "u", "event": "e"}], "sentAt": sent_at})
    with pytest.raises(InvalidInput) as caught:
        collect(body, None, INFO)
    assert caught.value.reason == "invalid_timestamp"


def test_message_sent_at_off_the_calendar_is_a_400():
    with pytest.raises(InvalidInput) as caught:
        collect(decoded({"userId": "u", "event": "e", "sentAt": "0001-01-01T00:00:00+01:00"}), "track", INFO)
    assert caught.value.reason == "invalid_timestamp"


def test_lone_surrogate_in_a_batch_context_is_a_400():
    body = decoded({"batch": [{"type": "track", "userId": "u", "event": "e"}], "context": {"k": "\ud800"}})
    with pytest.raises(InvalidInput):
        collect(body, None, INFO)


def test_a_body_write_key_with_a_lone_surrogate_is_no_key():
    body = decoded({"writeKey": "dev-write-key\ud800"})
    assert source_for(body["writeKey"], KEYS) is None
    assert source_for("\udc00", KEYS) is None
    assert source_for("dev-write-key", KEYS) == "dev"


def _published_or_refused(body: object, event_type: str | None) -> None:
    try:
        out = collect(body, event_type, INFO)
    except InvalidInput:
        return
    for key, value in out.records:  # what is published is valid UTF-8 JSON, key included
        assert key is None or key.decode("utf-8")
        json.loads(value.decode("utf-8"))
    for kind in out.types:
        assert kind in ("track", "identify", "page", "screen", "group", "alias")


@given(hostile_message, st.sampled_from(["track", "identify", "page", "screen", "group", "alias"]))
def test_any_single_message_is_collected_or_refused(message, event_type):
    _published_or_refused(decoded(message), event_type)


@given(hostile_batch)
def test_any_batch_is_collected_or_refused(batch):
    _published_or_refused(decoded(batch), None)


@given(hostile_text)
def test_any_write_key_is_looked_up_without_error(key):
    assert source_for(key, KEYS) in (None, "dev")


def test_the_strategies_really_produce_lone_surrogates():
    """Guards the fuzzers above: a strategy without surrogates would make them pass vacuously."""
    seen: list[bool] = []

    @given(hostile_text)
    def probe(text):
        seen.append(any(0xD800 <= ord(c) <= 0xDFFF for c in text))

    probe()
    assert any(seen)
    with pytest.raises(orjson.JSONEncodeError):
        orjson.dumps("\ud800")
