"""What the SDKs need of the collector's pure parts: the route table, /v1/import's kept
timestamps and bigger batches, RudderStack's identify traits, the 429 headers."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from eventpipe.errors import PayloadTooLarge
from eventpipe.events import normalize
from eventpipe.ingest.collect import RequestInfo, collect
from eventpipe.ingest.ratelimit import retry_headers
from eventpipe.ingest.routes import Route, tracking_paths

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def test_every_segment_path_maps_to_its_handler():
    paths = tracking_paths()
    # analytics.js posts to the first letter of the type; /v1/b is its (and analytics-swift's) batch
    short = {"/v1/t": "track", "/v1/i": "identify", "/v1/p": "page", "/v1/s": "screen", "/v1/g": "group"}
    for path, kind in {**short, "/v1/a": "alias"}.items():
        assert paths[path] == Route(kind) == paths[f"/v1/{kind}"]
    assert paths["/v1/b"] == paths["/v1/batch"] == Route(None)
    assert paths["/v1/import"] == Route(None, importing=True)
    assert len(paths) == 6 + 6 + 3


def info(**kw) -> RequestInfo:
    return RequestInfo(received_at=NOW, source="dev", client_ip=None, max_event_bytes=32 * 1024, **kw)


SKEWED = {"type": "track", "userId": "u", "event": "e", "timestamp": "2025-03-01T10:00:00Z"}
BODY = {"batch": [SKEWED], "sentAt": "2025-03-01T10:00:05Z"}


def stored_timestamp(correct_skew: bool) -> str:
    collected = collect(BODY, None, info(max_batch_events=10, correct_skew=correct_skew))
    event = collected.records[0][1]
    return orjson.loads(event)["timestamp"]


def test_import_keeps_the_timestamp_batch_corrects_it():
    # a batch sent 5 s after the event is placed 5 s before receipt; an import keeps its date
    assert stored_timestamp(correct_skew=True) == "2026-11-26T11:59:55.000Z"
    assert stored_timestamp(correct_skew=False) == "2025-03-01T10:00:00.000Z"


def test_import_without_timestamp_happened_on_receipt():
    event = normalize({"userId": "u", "event": "e"}, event_type="track", received_at=NOW, source="dev",
                      correct_skew=False)  # fmt: skip
    assert event["timestamp"] == "2026-11-26T12:00:00.000Z"


def test_the_batch_limit_is_the_callers():
    body = {"batch": [SKEWED] * 20}
    with pytest.raises(PayloadTooLarge):
        collect(body, None, info(max_batch_events=10))
    assert len(collect(body, None, info(max_batch_events=20, correct_skew=False)).records) == 20


def test_rudderstack_identify_traits_from_context():
    rudder = {"userId": "u", "context": {"traits": {"plan": "pro"}, "library": {"name": "analytics-python"}}}
    event = normalize(rudder, event_type="identify", received_at=NOW, source="dev")
    assert event["traits"] == {"plan": "pro"}
    assert event["context"]["traits"] == {"plan": "pro"}  # the context is kept as sent
    segment = {"userId": "u", "traits": {"plan": "team"}, "context": {"traits": {"plan": "old"}}}
    assert normalize(segment, event_type="identify", received_at=NOW, source="dev")["traits"] == {
        "plan": "team"
    }
    track = {"userId": "u", "event": "e", "context": {"traits": {"plan": "pro"}}}
    assert normalize(track, event_type="track", received_at=NOW, source="dev")["traits"] is None


@pytest.mark.parametrize(("wait", "seconds"), [(0.01, "1"), (1.0, "1"), (1.2, "2"), (59.5, "60")])
def test_429_headers_say_whole_seconds_both_ways(wait, seconds):
    assert retry_headers(wait) == {"Retry-After": seconds, "X-RateLimit-Reset": seconds}
