"""The collector's fused hot path answers exactly as ``normalize``, the reference, or stands aside.

Generated messages mix what SDKs send with every near miss (numbers as ids, other timestamp
forms, impossible dates, wrong field types, missing users, corrections outside the
calendar); for each, ``fast_normalize`` must either return ``None`` or the reference's
event, byte for byte once encoded (key order included). The named cases pin that the
common messages really take the fast path, so the comparison is not vacuous.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from eventpipe.errors import InvalidInput
from eventpipe.events import normalize
from eventpipe.ingest.fastnorm import fast_normalize
from eventpipe.timeutil import format_ts

RECEIVED = datetime(2026, 11, 26, 12, 0, 0, 123000, tzinfo=UTC)
BATCH_SENT = datetime(2026, 11, 26, 11, 59, 59, tzinfo=UTC)


def mostly(usual, near_miss):
    """``usual`` four times in five, else a near miss: most messages reach the fast path's end."""
    return st.integers(0, 4).flatmap(lambda pick: near_miss if pick == 0 else usual)


ids = mostly(
    st.one_of(st.sampled_from(["u-1", "a-1", None]), st.text(max_size=4)),
    st.sampled_from(["", "x" * 256, "x" * 257, 0, 7, True, {}]),
)
times = mostly(
    st.sampled_from([None, "2026-11-26T10:00:00.000Z", "2026-11-26T11:59:58.999Z"]),
    st.sampled_from(
        [
            "2026-13-26T10:00:00.000Z",  # month 13: the canonical shape, not a date
            "2026-11-26T10:00:00Z",
            "2026-11-26T10:00:00.000+02:00",
            "0001-01-01T00:00:00.000Z",
            "9999-12-31T23:59:59.999Z",
            "0999-06-01T00:00:00.500Z",
            "not a time",
            "",
            3,
        ]
    ),
)
objects = mostly(
    st.one_of(
        st.none(),
        st.dictionaries(
            st.sampled_from(["a", "ip", "traits", "page"]), st.one_of(st.integers(-9, 9), st.just({"x": 1}))
        ),
    ),
    st.sampled_from([[1], "text"]),
)
messages = st.fixed_dictionaries(
    {
        "type": mostly(
            st.sampled_from(["track", "page", "screen", "identify"]),
            st.sampled_from(["group", "alias", "other", 1]),
        ),
        "userId": ids,
    },
    optional={
        "anonymousId": ids,
        "messageId": ids,
        "event": mostly(st.just("Signed Up"), st.sampled_from([None, " ", "", "x" * 257, 7])),
        "name": mostly(st.sampled_from([None, "Home"]), st.just(3)),
        "groupId": ids,
        "previousId": ids,
        "properties": objects,
        "traits": objects,
        "context": objects,
        "integrations": objects,
        "timestamp": times,
        "sentAt": times,
        "channel": st.sampled_from(["web", 4]),
        "version": st.sampled_from(["1.1", 4]),
        "extra": st.just("dropped"),
    },
)
requests = st.fixed_dictionaries(
    {
        "event_type": st.sampled_from([None, "track", "page", "identify", "alias"]),
        "client_ip": st.sampled_from([None, "", "10.0.0.1"]),
        "batch_sent_at": st.sampled_from([None, BATCH_SENT]),
        "batch_context": st.sampled_from([None, {}, {"ip": "1.2.3.4", "library": {"name": "x"}}]),
        "correct_skew": st.booleans(),
    }
)


def reference(message, request):
    try:
        return normalize(
            message,
            event_type=request["event_type"],
            received_at=RECEIVED,
            source="dev",
            client_ip=request["client_ip"],
            batch_sent_at=request["batch_sent_at"],
            batch_context=request["batch_context"],
            received_text=format_ts(RECEIVED),
            correct_skew=request["correct_skew"],
        )
    except InvalidInput as exc:
        return exc


def fast(message, request):
    batch = {"receivedText": format_ts(RECEIVED)}
    if request["batch_sent_at"] is not None:
        batch["sentAt"], batch["sentText"] = request["batch_sent_at"], format_ts(request["batch_sent_at"])
    if request["batch_context"] is not None:
        batch["context"] = request["batch_context"]
    return fast_normalize(
        message, request["event_type"], RECEIVED, "dev", request["client_ip"], batch, request["correct_skew"]
    )


def same(fast_event, expected):
    """Equal events, once encoded (key order and types included); a generated messageId differs."""
    if "messageId" not in fast_event or str(fast_event["messageId"]).startswith("ep-"):
        assert str(expected["messageId"]).startswith("ep-")
        fast_event, expected = {**fast_event, "messageId": "-"}, {**expected, "messageId": "-"}
    assert orjson.dumps(fast_event) == orjson.dumps(expected)


@settings(max_examples=1500, deadline=None)
@given(messages, requests)
def test_the_fast_path_answers_as_normalize_or_stands_aside(message, request):
    got = fast(message, request)
    event(f"fast path: {got is not None}")
    if got is None:
        return
    expected = reference(message, request)
    assert not isinstance(expected, InvalidInput), f"fast path accepted what normalize refuses: {expected}"
    same(got, expected)


SDK_TRACK = {
    "type": "track",
    "userId": "user-1",
    "event": "Product Viewed",
    "messageId": "m-1",
    "timestamp": "2026-11-26T10:00:00.000Z",
    "sentAt": "2026-11-26T10:00:01.500Z",
    "properties": {"price": 19.99},
    "context": {"library": {"name": "analytics.js"}},
}


@pytest.mark.parametrize(
    "message",
    [
        SDK_TRACK,
        {**SDK_TRACK, "sentAt": None},
        {"type": "page", "anonymousId": "a-1", "name": "Home", "timestamp": "2026-11-26T10:00:00.000Z"},
        {"type": "screen", "anonymousId": "a-1"},
        {"type": "identify", "userId": "u", "anonymousId": "a", "context": {"traits": {"plan": "pro"}}},
        {**SDK_TRACK, "context": {"ip": "192.0.2.1"}},
        {**SDK_TRACK, "anonymousId": "", "channel": "server", "integrations": {"All": True}},
    ],
)
@pytest.mark.parametrize("request_", [{"batch_sent_at": None}, {"batch_sent_at": BATCH_SENT}])
def test_what_sdks_send_takes_the_fast_path(message, request_):
    request = {"event_type": None, "client_ip": "10.0.0.1", "batch_context": None, "correct_skew": True}
    request.update(request_)
    got = fast(message, request)
    assert got is not None
    same(got, reference(message, request))
