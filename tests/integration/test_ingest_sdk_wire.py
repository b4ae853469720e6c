"""The collector's SDK wire formats over real HTTP against the real Kafka, for what no SDK
in the e2e suite sends: a mobile SDK's gzipped body with its key inside (analytics-kotlin),
/v1/import, the short routes' errors and the 429 headers a browser script may read."""

from __future__ import annotations

import gzip

import httpx
import orjson
import pytest

from tests.support.kafka import read_topic
from tests.support.servers import running_ingest

ORIGIN = {"Origin": "https://shop.example"}


@pytest.fixture
def ingest(topics):
    with running_ingest(topics) as url:
        yield url


def kotlin_batch(write_key: str, message_id: str) -> bytes:
    """What analytics-kotlin posts to /v1/b: gzip, no Authorization header, the key inside."""
    event = {"type": "track", "event": "App Opened", "userId": "m1", "messageId": message_id,
             "context": {"library": {"name": "analytics-kotlin", "version": "1.16.0"}}}  # fmt: skip
    return gzip.compress(orjson.dumps({"batch": [event], "writeKey": write_key, "sentAt": None}))


def test_gzipped_body_with_its_key_inside_is_accepted(ingest, topics):
    headers = {"Content-Encoding": "gzip", "Content-Type": "text/plain"}
    response = httpx.post(f"{ingest}/v1/b", content=kotlin_batch("dev-write-key", "k-1"), headers=headers)
    assert response.status_code == 200, response.text
    records = read_topic(topics.kafka_bootstrap, topics.events_topic, expect=1)
    assert [(r["value"]["messageId"], r["value"]["source"]) for r in records] == [("k-1", "dev")]


def test_gzipped_body_with_a_wrong_key_or_a_bomb_is_refused_and_stores_nothing(ingest, topics):
    headers = {"Content-Encoding": "gzip"}
    wrong = httpx.post(f"{ingest}/v1/b", content=kotlin_batch("not-a-key", "k-2"), headers=headers)
    assert wrong.status_code == 401
    # inflation is capped before anything reads the key: a bomb is a 413, never a 401 after 20 MB
    bomb = gzip.compress(b'{"writeKey":"dev-write-key","batch":[],"pad":"' + b"0" * 20_000_000 + b'"}')
    assert httpx.post(f"{ingest}/v1/b", content=bomb, headers=headers).status_code == 413
    good = httpx.post(f"{ingest}/v1/t", json={"userId": "u", "event": "after", "writeKey": "dev-write-key"})
    assert good.status_code == 200
    records = read_topic(topics.kafka_bootstrap, topics.events_topic, expect=1, timeout_s=10)
    assert [r["value"]["event"] for r in records] == ["after"]


def test_short_routes_keep_the_long_routes_errors(ingest):
    key = {"writeKey": "dev-write-key"}
    assert httpx.post(f"{ingest}/v1/t", json={**key, "userId": "u"}).json()["error"] == "missing_event"
    assert httpx.post(f"{ingest}/v1/i", json={"userId": "u"}).status_code == 401
    assert httpx.post(f"{ingest}/v1/b", json={**key, "batch": []}).json()["error"] == "invalid_batch"
    assert httpx.post(f"{ingest}/v1/x", json={**key, "userId": "u"}).status_code == 404


def test_import_keeps_timestamps_and_takes_bigger_batches(ingest, topics):
    old = [
        {"type": "track", "userId": f"u{i}", "event": "Legacy Order", "messageId": f"imp-{i}",
         "timestamp": "2024-02-29T23:59:59.500Z"}
        for i in range(3000)
    ]  # fmt: skip
    body = {"batch": old, "sentAt": "2026-11-26T10:00:00Z"}  # uploaded long after: no correction
    auth = ("dev-write-key", "")
    assert httpx.post(f"{ingest}/v1/batch", json=body, auth=auth).status_code == 413  # over 2,500
    response = httpx.post(f"{ingest}/v1/import", json=body, auth=auth)
    assert response.status_code == 200 and response.json()["accepted"] == 3000
    records = read_topic(topics.kafka_bootstrap, topics.events_topic, expect=3000)
    assert {r["value"]["timestamp"] for r in records} == {"2024-02-29T23:59:59.500Z"}
    assert len({r["value"]["messageId"] for r in records}) == 3000


def test_429_says_when_in_both_headers_and_a_browser_may_read_them(topics):
    limited = topics.model_copy(update={"rate_limit_per_s": 1.0, "rate_limit_burst": 1.0})
    with running_ingest(limited) as url:
        body = {"userId": "u", "event": "e", "writeKey": "dev-write-key"}
        statuses = [httpx.post(f"{url}/v1/t", json=body, headers=ORIGIN) for _ in range(3)]
        refused = [r for r in statuses if r.status_code == 429]
        assert refused, [r.status_code for r in statuses]
        headers = refused[0].headers
        assert int(headers["retry-after"]) >= 1 and headers["x-ratelimit-reset"] == headers["retry-after"]
        exposed = {h.strip().lower() for h in headers["access-control-expose-headers"].split(",")}
        assert {"retry-after", "x-ratelimit-reset"} <= exposed
