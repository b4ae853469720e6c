"""The event model: validation, normalisation and clock-skew correction (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventpipe.errors import InvalidInput
from eventpipe.events import corrected_timestamp, normalize, user_key
from eventpipe.timeutil import canonical_text, format_ts, parse_ts

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def norm(message, event_type="track", **kw):
    return normalize(message, event_type=event_type, received_at=NOW, source="dev", **kw)


def test_track_is_normalised_with_server_fields():
    event = norm({"userId": "u1", "event": "Signed Up", "properties": {"plan": "pro"}}, client_ip="10.0.0.1")
    assert event["type"] == "track"
    assert event["event"] == "Signed Up"
    assert event["receivedAt"] == "2026-11-26T12:00:00.000Z"
    assert event["timestamp"] == event["receivedAt"]  # no client timestamp: happened on receipt
    assert event["originalTimestamp"] is None
    assert event["source"] == "dev"
    assert event["context"] == {"ip": "10.0.0.1"}
    assert event["messageId"].startswith("ep-")


def test_clock_skew_is_corrected_as_segment_documents():
    # client clock 1 hour behind: it says it sent at 11:00:05 an event from 11:00:00
    event = norm(
        {"userId": "u", "event": "e", "timestamp": "2026-11-26T11:00:00Z", "sentAt": "2026-11-26T11:00:05Z"}
    )
    assert event["timestamp"] == "2026-11-26T11:59:55.000Z"
    assert event["originalTimestamp"] == "2026-11-26T11:00:00.000Z"


def test_message_sent_at_wins_over_batch_sent_at():
    batch_sent = parse_ts("2026-11-26T11:00:10Z")
    msg = {"userId": "u", "event": "e", "timestamp": "2026-11-26T11:00:00Z", "sentAt": "2026-11-26T11:00:05Z"}
    assert norm(msg, batch_sent_at=batch_sent)["timestamp"] == "2026-11-26T11:59:55.000Z"
    del msg["sentAt"]
    assert norm(msg, batch_sent_at=batch_sent)["timestamp"] == "2026-11-26T11:59:50.000Z"


def test_batch_context_is_merged_and_message_context_wins():
    event = norm(
        {"userId": "u", "event": "e", "context": {"app": "a"}}, batch_context={"app": "b", "os": "x"}
    )
    assert event["context"]["app"] == "a"
    assert event["context"]["os"] == "x"


def test_null_anonymous_id_beside_user_id_is_accepted():
    event = norm({"userId": "u1", "anonymousId": None, "event": "e", "integrations": {"All": True}})
    assert user_key(event) == "u1"
    assert event["integrations"] == {"All": True}


def test_user_key_falls_back_to_anonymous_id():
    assert user_key(norm({"anonymousId": "a1", "event": "e"})) == "a1"


@pytest.mark.parametrize(
    ("message", "event_type", "reason"),
    [
        ({"event": "e"}, "track", "missing_user"),
        ({"userId": "u"}, "track", "missing_event"),
        ({"userId": "u", "event": "  "}, "track", "missing_event"),
        ({"userId": "u", "event": "e", "properties": []}, "track", "invalid_field"),
        ({"userId": "u", "event": "e", "timestamp": "yesterday"}, "track", "invalid_timestamp"),
        ({"userId": {"a": 1}, "event": "e"}, "track", "invalid_field"),
        ({"userId": "u"}, "group", "missing_field"),
        ({"userId": "u"}, "alias", "missing_field"),
        ({"type": "bogus", "userId": "u"}, None, "invalid_type"),
        ([1, 2], "track", "invalid_event"),
        ({"userId": "x" * 300, "event": "e"}, "track", "invalid_field"),
    ],
)
def test_invalid_messages_get_a_reason(message, event_type, reason):
    with pytest.raises(InvalidInput) as info:
        norm(message, event_type)
    assert info.value.reason == reason


def test_batch_messages_name_their_type():
    assert norm({"type": "page", "userId": "u", "name": "Home"}, None)["type"] == "page"


@given(
    received=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    skew_ms=st.integers(-(10**9), 10**9),
    delay_ms=st.integers(0, 10**7),
)
def test_skew_correction_preserves_the_client_delay(received, skew_ms, delay_ms):
    """Whatever the client clock's error, the event happened `delay` before receipt."""
    original = received - timedelta(milliseconds=delay_ms) + timedelta(milliseconds=skew_ms)
    sent_at = received + timedelta(milliseconds=skew_ms)
    assert corrected_timestamp(received, sent_at, original) == received - timedelta(milliseconds=delay_ms)


@given(st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9998, 1, 1), timezones=st.just(UTC)))
def test_timestamps_round_trip_at_millisecond_precision(moment):
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    assert parse_ts(format_ts(moment)) == moment


@pytest.mark.parametrize(
    ("timestamp", "sent_at"),
    [
        ("8282-04-27T00:00:00Z", "0206-04-11T00:00:00Z"),
        ("0001-01-01T00:00:00+05:00", None),
        ("9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"),
    ],
)
def test_timestamps_at_the_edge_of_the_calendar_are_invalid_not_errors(timestamp, sent_at):
    message = {
        "userId": "u",
        "event": "e",
        "timestamp": timestamp,
        **({"sentAt": sent_at} if sent_at else {}),
    }
    with pytest.raises(InvalidInput) as info:
        norm(message)
    assert info.value.reason == "invalid_timestamp"


_timestamps = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(
    lambda d: d.isoformat()
) | st.sampled_from(["", "Z", "2026-13-01T00:00:00Z", "0001-01-01T00:00:00+14:00"])
_values = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=5)
    | _timestamps
    | st.lists(st.integers(), max_size=2)
)


@given(
    st.fixed_dictionaries(
        {},
        optional={
            "userId": _values,
            "anonymousId": _values,
            "event": _values,
            "timestamp": _values,
            "sentAt": _values,
            "properties": _values,
            "context": _values,
            "messageId": _values,
        },
    ),
    st.sampled_from(["track", "identify", "page", "screen", "group", "alias"]),
)
def test_any_message_is_normalised_or_invalid_never_an_error(message, event_type):
    try:
        event = norm(message, event_type)
    except InvalidInput:
        return
    assert event["timestamp"].endswith("Z") and event["receivedAt"] == "2026-11-26T12:00:00.000Z"


@pytest.mark.parametrize(
    "sent",
    [
        "2026-11-26T10:00:00.123Z",  # the canonical form: kept as sent
        "2026-11-26T10:00:00.123z",
        "2026-11-26T10:00:00Z",
        "2026-11-26T10:00:00.123456Z",
        "2026-11-26T11:00:00.123+01:00",
        "2026-W48-4T10:00:00.123Z",  # an ISO week date of the same length as the canonical form
        "2026-11-26 10:00:00.123",
        "2026-11-26",
    ],
)
def test_canonical_text_is_what_format_ts_writes(sent):
    assert canonical_text(sent, parse_ts(sent)) == format_ts(parse_ts(sent))


@given(st.datetimes(timezones=st.just(UTC)))
def test_canonical_text_keeps_a_canonical_timestamp(moment):
    text = format_ts(moment)
    assert canonical_text(text, parse_ts(text)) == format_ts(parse_ts(text)) == text
