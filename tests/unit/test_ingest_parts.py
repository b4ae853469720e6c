"""Collector parts without I/O: auth, rate limits, bodies, request collection."""

from __future__ import annotations

import base64
import gzip
from datetime import UTC, datetime

import orjson
import pytest

from eventpipe.errors import InvalidInput, PayloadTooLarge
from eventpipe.ingest.auth import source_for, write_key_from_header
from eventpipe.ingest.body import decode_body
from eventpipe.ingest.collect import RequestInfo, collect, dead_letter
from eventpipe.ingest.metrics import EventNameLabels, IngestMetrics
from eventpipe.ingest.ratelimit import RateLimiter

INFO = RequestInfo(datetime(2026, 11, 26, tzinfo=UTC), "dev", "127.0.0.1", 32 * 1024, 2500)


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def test_write_key_from_basic_auth():
    assert write_key_from_header(basic("k1")) == "k1"
    assert write_key_from_header("Bearer abc") is None
    assert write_key_from_header("Basic !!!") is None
    assert write_key_from_header(None) is None


def test_source_lookup():
    keys = {"k1": "web", "k2": "ios"}
    assert source_for("k2", keys) == "ios"
    assert source_for("k3", keys) is None
    assert source_for(None, keys) is None


def test_rate_limiter_refills_with_time():
    limiter = RateLimiter(rate=10, burst=10)
    assert limiter.retry_after("k", 10, now=0.0) == 0
    assert limiter.retry_after("k", 5, now=0.0) == pytest.approx(0.5)
    assert limiter.retry_after("other", 10, now=0.0) == 0  # keys are independent
    assert limiter.retry_after("k", 5, now=0.6) == 0


def test_rate_limiter_off_by_default():
    assert RateLimiter(rate=0).retry_after("k", 10**6, now=0) == 0


def test_gzip_body_and_bomb():
    assert decode_body(gzip.compress(b'{"a":1}'), "gzip", 1000) == b'{"a":1}'
    bomb = gzip.compress(b"0" * 10_000_000)
    with pytest.raises(PayloadTooLarge):
        decode_body(bomb, "gzip", 500 * 1024)
    with pytest.raises(InvalidInput):
        decode_body(b"not gzip", "gzip", 1000)
    with pytest.raises(InvalidInput):
        decode_body(b"x", "br", 1000)


def test_batch_keeps_valid_events_and_reports_the_rest():
    body = {
        "batch": [
            {"type": "track", "userId": "u1", "event": "A"},
            {"type": "track", "event": "no user"},
            {"type": "identify", "userId": "u1", "traits": {"a": 1}},
        ],
        "sentAt": "2026-11-26T00:00:00Z",
        "context": {"library": {"name": "analytics-python"}},
    }
    out = collect(body, None, INFO)
    assert len(out.records) == 2
    assert [r.index for r in out.rejected] == [1]
    key, value = out.records[0]
    assert key == b"u1"
    assert orjson.loads(value)["context"]["library"]["name"] == "analytics-python"
    letter = orjson.loads(dead_letter(out.rejected[0], INFO))
    assert letter["reason"] == "missing_user" and letter["message"]["event"] == "no user"


def test_all_invalid_batch_is_an_error():
    with pytest.raises(InvalidInput):
        collect({"batch": [{"type": "track"}]}, None, INFO)


@pytest.mark.parametrize("body", [{"batch": []}, {"batch": "x"}, {}, [1]])
def test_malformed_batches(body):
    with pytest.raises(InvalidInput):
        collect(body, None, INFO)


def test_batch_over_the_event_limit():
    with pytest.raises(PayloadTooLarge):
        collect({"batch": [{"type": "track", "userId": "u", "event": "e"}] * 2501}, None, INFO)


def test_oversized_event_is_rejected():
    big = {"userId": "u", "event": "e", "properties": {"blob": "x" * 40_000}}
    with pytest.raises(PayloadTooLarge):
        collect(big, "track", INFO)


def test_event_name_labels_are_bounded():
    labels = EventNameLabels("Order Completed", top=2, admit_after=1)
    assert [labels.label(n) for n in ("a", "b", "c", "Order Completed", "a", "x" * 100)] == [
        "a",
        "b",
        "other",
        "Order Completed",
        "a",
        "other",
    ]


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_junk_names_cannot_squat_the_label_slots():
    """60 junk names filled every slot for good before; a frequent real event now takes one."""
    metrics = IngestMetrics(EventNameLabels("Order Completed", top=50, admit_after=5, clock=ManualClock()))
    names = metrics.event_names
    for junk in range(60):
        for _ in range(5):
            metrics.events_by_name.labels(names.label(f"junk-{junk}")).inc()
    assert len(names.labelled) == 50
    seen = [names.label("Checkout Started") for _ in range(10)]
    assert seen[-1] == "Checkout Started", seen
    assert seen.index("Checkout Started") <= 6  # from the first event that outnumbers the weakest
    assert len(names.labelled) == 50  # still bounded: a junk name lost its slot...
    exported = {s.labels["event"] for s in metrics.events_by_name.collect()[0].samples}
    assert len({n for n in exported if n.startswith("junk-")}) < 50  # ...and its series


def test_label_slots_go_to_recent_use_after_a_window():
    clock = ManualClock()
    names = EventNameLabels("", top=1, admit_after=2, window_s=600, clock=clock)
    assert [names.label("old") for _ in range(3)] == ["other", "old", "old"]
    clock.now = 2000  # two windows later: "old" was not used since
    assert [names.label("new") for _ in range(3)] == ["other", "new", "new"]
    assert names.label("old") == "other"


def test_configured_names_always_have_their_label():
    names = EventNameLabels("Order Completed", top=0)
    assert names.label("Order Completed") == "Order Completed"
    assert names.label("anything") == "other"


def test_a_requests_events_of_one_name_share_one_label():
    names = EventNameLabels("", top=1, admit_after=5, clock=ManualClock())
    assert names.label("small", 4) == "other"  # 4 events: below the admission count
    assert names.label("big", 5) == "big"  # one request of 5: admitted at once
    assert names.labelled == {"big": 5}
    assert names.label("big", 3) == "big" and names.labelled == {"big": 8}


def test_request_metrics_count_every_event_once():
    metrics = IngestMetrics(EventNameLabels("Order Completed", top=5, admit_after=1))
    types = ["track", "track", "page", "identify"]
    names = ["Order Completed", "Song Played", "page", None]
    metrics.accepted("web", types, names, [300, 300, 2000, 100])
    by_type = {
        s.labels["type"]: s.value
        for s in metrics.events_accepted.collect()[0].samples
        if s.name.endswith("_total")
    }
    assert by_type == {"track": 2, "page": 1, "identify": 1}
    by_name = {
        s.labels["event"]: s.value
        for s in metrics.events_by_name.collect()[0].samples
        if s.name.endswith("_total")
    }
    assert by_name == {"Order Completed": 1, "Song Played": 1, "page": 1}
    sizes = {s.name: s.value for s in metrics.event_bytes.collect()[0].samples if not s.labels}
    assert sizes["eventpipe_ingest_event_size_bytes_count"] == 4
    assert sizes["eventpipe_ingest_event_size_bytes_sum"] == 2700


def test_observing_many_sizes_at_once_exports_what_observing_each_does():
    from prometheus_client import CollectorRegistry, Histogram

    from eventpipe.ingest.metrics import SIZE_BUCKETS, observe_many

    # bounds themselves, one byte either side, beyond the last bound, zero
    sizes = [0, 1, 255, 256, 257, 1024, 1025, 32768, 1048576, 1048577, 5_000_000, 300, 300]
    one_by_one = Histogram("each", "h", buckets=SIZE_BUCKETS, registry=CollectorRegistry())
    for size in sizes:
        one_by_one.observe(size)
    at_once = Histogram("each", "h", buckets=SIZE_BUCKETS, registry=CollectorRegistry())
    observe_many(at_once, sizes)

    def samples(histogram):
        return [
            (s.name, s.labels, s.value) for s in histogram.collect()[0].samples if "created" not in s.name
        ]

    assert samples(at_once) == samples(one_by_one)


def exported(metrics: IngestMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in (metrics.events_accepted, metrics.events_by_name, metrics.event_bytes)
        for s in family.collect()[0].samples
        if not s.name.endswith("_created")
    }


def test_single_event_requests_count_as_one_request_of_the_same_events():
    calls = [("track", "Song Played", 300), ("page", "page", 2000), ("identify", None, 100)] * 3
    one_by_one = IngestMetrics(EventNameLabels("", top=5, admit_after=1, clock=ManualClock()))
    for kind, name, size in calls:
        one_by_one.accepted("web", [kind], [name], [size])
    at_once = IngestMetrics(EventNameLabels("", top=5, admit_after=1, clock=ManualClock()))
    at_once.accepted("web", *map(list, zip(*calls, strict=True)))
    assert exported(one_by_one) == exported(at_once)
    assert exported(at_once)[("eventpipe_ingest_events_by_name_total", (("event", "page"),))] == 3


def test_a_name_that_lost_its_slot_and_wins_it_back_counts_from_zero_again():
    clock = ManualClock()
    metrics = IngestMetrics(EventNameLabels("", top=1, admit_after=1, window_s=600, clock=clock))
    metrics.accepted("web", ["track"], ["old"], [10])
    clock.now = 2000  # "old" unused for two windows: "new" takes its slot, its series goes
    metrics.accepted("web", ["track"], ["new"], [10])
    clock.now = 4000
    metrics.accepted("web", ["track"], ["old"], [10])
    by_name = {k: v for k, v in exported(metrics).items() if k[0].endswith("_by_name_total")}
    # a fresh series, not the evicted one's (whose child no longer exports)
    assert by_name == {("eventpipe_ingest_events_by_name_total", (("event", "old"),)): 1.0}
