"""The collector over real HTTP against the real Kafka: what a 2xx promises, and bad input."""

from __future__ import annotations

import gzip
import json
import uuid

import httpx
import orjson
import pytest
from kafka.partitioner.default import murmur2

from tests.support.kafka import read_topic
from tests.support.servers import running_ingest

AUTH = ("dev-write-key", "")


@pytest.fixture
def ingest(topics):
    with running_ingest(topics) as url:
        yield url


def track(n: int, **extra) -> dict:
    return {
        "type": "track",
        "userId": f"u{n % 7}",
        "event": "Song Played",
        "messageId": f"m-{n}",
        "properties": {"n": n},
        **extra,
    }


def test_single_events_of_every_type_land_in_kafka(ingest, topics):
    calls = {
        "track": {"userId": "u1", "event": "Signed Up"},
        "identify": {"userId": "u1", "traits": {"plan": "pro"}},
        "page": {"anonymousId": "a1", "name": "Home"},
        "screen": {"userId": "u1", "name": "Settings"},
        "group": {"userId": "u1", "groupId": "g1"},
        "alias": {"userId": "u1", "previousId": "a1"},
    }
    received = {}
    with httpx.Client(base_url=ingest, auth=AUTH) as client:
        for kind, body in calls.items():
            response = client.post(f"/v1/{kind}", json=body)
            assert response.status_code == 200, response.text
            answer = response.json()
            received[kind] = answer.pop("receivedAt")
            assert answer == {"success": True, "accepted": 1}
    records = read_topic(topics.kafka_bootstrap, topics.events_topic, expect=6)
    assert sorted(r["value"]["type"] for r in records) == sorted(calls)
    for record in records:
        event = record["value"]
        assert event["receivedAt"] == received[event["type"]]  # the answer tells the stamp
        assert record["key"] == (event["userId"] or event["anonymousId"]).encode()
        assert event["source"] == "dev" and event["receivedAt"] and event["messageId"]


def test_batch_gzip_and_partial_rejection_with_dead_letters(ingest, topics):
    batch = [track(i) for i in range(50)] + [{"type": "track", "event": "no user", "messageId": "bad-1"}]
    body = gzip.compress(orjson.dumps({"batch": batch, "sentAt": "2026-11-26T10:00:00Z"}))
    response = httpx.post(
        f"{ingest}/v1/batch",
        content=body,
        auth=AUTH,
        headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 50
    assert response.json()["rejected"] == [
        {"index": 50, "reason": "missing_user", "detail": "userId or anonymousId is required"}
    ]
    records = read_topic(topics.kafka_bootstrap, topics.events_topic, expect=50)
    assert sorted(r["value"]["messageId"] for r in records) == sorted(f"m-{i}" for i in range(50))
    letters = read_topic(topics.kafka_bootstrap, topics.deadletter_topic, expect=1)
    assert [d["value"]["message"]["messageId"] for d in letters] == ["bad-1"]


def test_pixel_and_cors(ingest, topics):
    data = orjson.dumps({"userId": "u9", "event": "Email Opened", "writeKey": "dev-write-key"})
    import base64

    response = httpx.get(f"{ingest}/v1/pixel/track", params={"data": base64.b64encode(data).decode()})
    assert response.status_code == 200 and response.headers["content-type"] == "image/gif"
    preflight = httpx.options(
        f"{ingest}/v1/track",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    records = read_topic(topics.kafka_bootstrap, topics.events_topic, expect=1)
    assert records[0]["value"]["event"] == "Email Opened"


BAD_INPUTS = [
    ("nan", b'{"userId":"u","event":"e","properties":{"x":NaN}}', {}, 400),
    ("duplicate keys", b'{"userId":"u","userId":"v","event":"e"}', {}, 400),
    ("huge number", b'{"userId":"u","event":"e","properties":{"x":' + b"1" * 10_000 + b"}}", {}, 400),
    (
        "deep nesting",
        b'{"userId":"u","event":"e","properties":' + b'{"a":' * 200 + b"1" + b"}" * 201,
        {},
        400,
    ),
    ("invalid utf-8", b'{"userId":"u","event":"\xc3\x28"}', {}, 400),
    ("lone surrogate", b'{"userId":"u","event":"e","properties":{"x":"\\udc00"}}', {}, 400),
    ("not json", b"hello", {}, 400),
    ("oversized body", b'{"userId":"u","event":"e","properties":{"x":"' + b"a" * 600_000 + b'"}}', {}, 413),
    ("oversized event", b'{"userId":"u","event":"e","properties":{"x":"' + b"a" * 40_000 + b'"}}', {}, 413),
    ("gzip bomb", gzip.compress(b'{"a":"' + b"0" * 20_000_000 + b'"}'), {"Content-Encoding": "gzip"}, 413),
    ("bad gzip", b"\x1f\x8b garbage", {"Content-Encoding": "gzip"}, 400),
    ("missing user", b'{"event":"e"}', {}, 400),
]


@pytest.mark.parametrize(("name", "body", "headers", "status"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_gets_a_clear_error_and_nothing_reaches_kafka(ingest, topics, name, body, headers, status):
    response = httpx.post(f"{ingest}/v1/track", content=body, auth=AUTH, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["success"] is False and response.json()["detail"]
    # the server stays healthy, and a good event still goes through
    good = httpx.post(
        f"{ingest}/v1/track", json={"userId": "ok", "event": "after", "messageId": name}, auth=AUTH
    )
    assert good.status_code == 200
    records = read_topic(topics.kafka_bootstrap, topics.events_topic, expect=1, timeout_s=10)
    assert [r["value"]["messageId"] for r in records] == [name]


def test_auth_errors(ingest):
    body = {"userId": "u", "event": "e"}
    assert httpx.post(f"{ingest}/v1/track", json=body).status_code == 401
    assert httpx.post(f"{ingest}/v1/track", json=body, auth=("wrong", "")).status_code == 401
    assert httpx.get(f"{ingest}/v1/track").status_code == 405
    assert httpx.post(f"{ingest}/v1/nope", json=body, auth=AUTH).status_code == 404


def test_batch_of_10000_events_is_refused(ingest, topics):
    body = {"batch": [track(i) for i in range(10_000)]}
    response = httpx.post(f"{ingest}/v1/batch", content=json.dumps(body), auth=AUTH)
    assert response.status_code == 413


def test_rate_limit_per_write_key(topics):
    limited = topics.model_copy(
        update={"rate_limit_per_s": 5.0, "rate_limit_burst": 5.0, "write_keys": "k1:one,k2:two"}
    )
    with running_ingest(limited) as url, httpx.Client(base_url=url) as client:
        statuses = [client.post("/v1/track", json=track(i), auth=("k1", "")).status_code for i in range(8)]
        assert statuses.count(429) >= 2
        refused = client.post("/v1/track", json=track(99), auth=("k1", ""))
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert client.post("/v1/track", json=track(100), auth=("k2", "")).status_code == 200


CLIENTS = ["confluent", "kafka-python"]  # the default first; both behind one interface


@pytest.mark.parametrize("client", CLIENTS)
def test_kafka_unreachable_means_503_never_2xx(topics, client):
    dead = topics.model_copy(
        update={"kafka_client": client, "kafka_bootstrap": "127.0.0.1:1", "publish_timeout_s": 2.0}
    )
    with running_ingest(dead) as url:
        response = httpx.post(f"{url}/v1/track", json=track(1), auth=AUTH, timeout=30)
        assert response.status_code == 503
        assert response.headers["retry-after"]
        assert httpx.get(f"{url}/healthz").status_code == 200
        assert httpx.get(f"{url}/readyz").status_code == 503


def test_health_metrics_and_openapi(ingest):
    assert httpx.get(f"{ingest}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{ingest}/readyz").status_code == 200
    for _ in range(5):  # a name takes a label slot from its 5th event in a window on
        httpx.post(f"{ingest}/v1/track", json=track(uuid.uuid4().int % 1000), auth=AUTH)
    metrics = httpx.get(f"{ingest}/metrics").text
    assert 'eventpipe_ingest_requests_total{route="/v1/track",status="200"}' in metrics
    assert "eventpipe_ingest_publish_duration_seconds_bucket" in metrics
    assert 'eventpipe_ingest_events_by_name_total{event="Song Played"}' in metrics
    spec = httpx.get(f"{ingest}/openapi.json").json()
    assert {"/v1/track", "/v1/batch", "/v1/pixel/{kind}"} <= set(spec["paths"])
    assert httpx.get(f"{ingest}/docs").status_code == 200


@pytest.mark.parametrize("client", CLIENTS)
def test_each_client_keeps_the_same_promise(topics, client):
    """Both publishers behind the same interface: same records, same keys, same answers."""
    chosen = topics.model_copy(update={"kafka_client": client})
    with running_ingest(chosen) as url:
        response = httpx.post(f"{url}/v1/batch", json={"batch": [track(i) for i in range(30)]}, auth=AUTH)
        assert response.status_code == 200 and response.json()["accepted"] == 30
    records = read_topic(topics.kafka_bootstrap, topics.events_topic, expect=30)
    assert sorted(r["value"]["messageId"] for r in records) == sorted(f"m-{i}" for i in range(30))
    assert {r["key"] for r in records} == {f"u{n}".encode() for n in range(7)}
    # the Java client's murmur2 key hash with either client: switching keeps users in place
    for record in records:
        expected = (murmur2(record["key"]) & 0x7FFFFFFF) % topics.events_partitions
        assert record["partition"] == expected, record["key"]


def test_a_trickled_body_is_cut_off_with_408(topics):
    import socket
    import time as clock

    impatient = topics.model_copy(update={"body_read_timeout_s": 1.0})
    with running_ingest(impatient) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: Basic ZGV2LXdyaXRlLWtleTo=\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
            )
            started = clock.monotonic()
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert clock.monotonic() - started < 5
