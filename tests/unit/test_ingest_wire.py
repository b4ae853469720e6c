"""The single-event path's own versions of framework work (issue 16) give the framework's answers:
header lookups, the usual 200, reading a body, the receivedAt text and the metric updates."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from eventpipe.errors import InvalidInput, PayloadTooLarge
from eventpipe.ingest.body import BODY_BUFFERED, read_body
from eventpipe.ingest.collect import StampText
from eventpipe.ingest.metrics import SIZE_BUCKETS, fast_inc, fast_observe
from eventpipe.ingest.wire import JSONBytes, header
from eventpipe.timeutil import format_ts

HEADERS = [
    (b"host", b"collector"),
    (b"authorization", b"Basic ZGV2LXdyaXRlLWtleTo="),
    (b"x-twice", b"first"),
    (b"x-twice", b"second"),
    (b"x-latin", "caf\u00e9".encode("latin-1")),
]


@pytest.mark.parametrize("name", ["host", "authorization", "x-twice", "x-latin", "origin", "x-absent"])
def test_a_header_reads_as_starlette_reads_it(name):
    scope = {"type": "http", "headers": HEADERS}
    assert header(scope, name.encode()) == Request(scope).headers.get(name)


@pytest.mark.parametrize("body", [b"", b'{"success":true,"accepted":1,"receivedAt":"2026-12-02"}'])
def test_the_usual_answer_carries_what_a_starlette_response_carries(body):
    ours, theirs = JSONBytes(body), Response(body, media_type="application/json")
    assert (ours.status_code, ours.body, ours.raw_headers) == (
        theirs.status_code,
        theirs.body,
        theirs.raw_headers,
    )
    assert ours.background is None


def receiving(*messages):
    queue = list(messages)

    async def receive():
        if not queue:
            await asyncio.sleep(3600)  # a client that sends nothing more
        return queue.pop(0)

    return receive


def part(body: bytes, more: bool = False) -> dict:
    return {"type": "http.request", "body": body, "more_body": more}


def read(scope: dict, receive, limit: int = 100, timeout_s: float = 5.0) -> bytes:
    return asyncio.run(read_body(scope, receive, limit, timeout_s))


@pytest.mark.parametrize("buffered", [True, False])
def test_a_body_is_read_whole_from_its_parts(buffered):
    scope = {BODY_BUFFERED: True} if buffered else {}
    assert read(scope, receiving(part(b'{"a":', True), part(b"", True), part(b"1}"))) == b'{"a":1}'
    assert read(scope, receiving(part(b"", more=False))) == b""


@pytest.mark.parametrize("buffered", [True, False])
def test_a_body_over_the_limit_is_413_and_a_client_gone_is_a_disconnect(buffered):
    scope = {BODY_BUFFERED: True} if buffered else {}
    with pytest.raises(PayloadTooLarge):
        read(scope, receiving(part(b"x" * 60, more=True), part(b"x" * 41)), limit=100)
    with pytest.raises(ClientDisconnect):
        read(scope, receiving(part(b"x", more=True), {"type": "http.disconnect"}))


def test_a_body_still_arriving_is_cut_off_at_its_deadline():
    with pytest.raises(InvalidInput) as caught:
        read({}, receiving(part(b"{", more=True)), timeout_s=0.05)
    assert caught.value.reason == "body_timeout"


START = datetime(2026, 12, 31, 23, 59, 59, 998_000, tzinfo=UTC)


@given(st.lists(st.integers(min_value=0, max_value=5_000), min_size=1, max_size=50))
def test_the_received_text_is_format_ts_whatever_the_order_of_moments(offsets_us):
    stamp = StampText()
    for offset in offsets_us:  # across a millisecond, a second and a year boundary, back and forth
        moment = START + timedelta(microseconds=offset)
        assert stamp(moment) == format_ts(moment)


def test_the_received_text_of_other_zones_and_naive_moments_is_format_ts():
    stamp = StampText()
    naive = datetime(2026, 12, 2, 10, 0, 0, 500)
    for moment in (START, START.astimezone(timezone(timedelta(hours=2))), naive):
        assert stamp(moment) == format_ts(moment)


def samples(metric) -> list:
    return [(s.name, s.labels, s.value) for s in metric.collect()[0].samples if "created" not in s.name]


def test_fast_observations_export_what_observe_does():
    amounts = [0, 1, 255, 256, 257, 1024, 1025, 32768, 1048576, 1048577, 5_000_000, 300, 0.5]
    slow = Histogram("h", "h", buckets=SIZE_BUCKETS, registry=CollectorRegistry())
    fast = Histogram("h", "h", buckets=SIZE_BUCKETS, registry=CollectorRegistry())
    observe = fast_observe(fast)
    for amount in amounts:
        slow.observe(amount)
        observe(amount)
    assert samples(fast) == samples(slow)


def test_fast_increments_export_what_inc_does():
    slow = Counter("c", "c", ["route"], registry=CollectorRegistry())
    fast = Counter("c", "c", ["route"], registry=CollectorRegistry())
    inc = fast_inc(fast.labels("/v1/track"))
    for amount in (1, 1, 5):
        slow.labels("/v1/track").inc(amount)
        inc(amount)
    assert samples(fast) == samples(slow)
