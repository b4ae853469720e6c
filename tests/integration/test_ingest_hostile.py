"""The outside review's requests against a real collector and Kafka: each was a 500 or an
amplification before; now each is a 4xx with a reason, and Kafka holds only what a 2xx promised."""

from __future__ import annotations

import base64
import gzip

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings

from tests.support.hostile import hostile_batch, hostile_message, wire
from tests.support.kafka import read_topic
from tests.support.servers import running_ingest

AUTH = ("dev-write-key", "")
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def ingest(topics):
    with running_ingest(topics) as url:
        yield url


def test_a_457_byte_amplification_request_is_413_and_publishes_nothing(ingest, topics):
    body = gzip.compress(
        wire(
            {"batch": [{"type": "track", "userId": "u", "event": "e"}] * 2500, "context": {"p": "x" * 30_000}}
        )
    )
    assert len(body) < 1000
    response = httpx.post(
        f"{ingest}/v1/batch", content=body, auth=AUTH, headers={**JSON, "Content-Encoding": "gzip"}
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "context_too_large"
    good = httpx.post(
        f"{ingest}/v1/track", json={"userId": "ok", "event": "after", "messageId": "g"}, auth=AUTH
    )
    assert good.status_code == 200
    assert [r["value"]["messageId"] for r in read_topic(topics.kafka_bootstrap, topics.events_topic, 1)] == [
        "g"
    ]


REVIEW_500S = [
    ("userId lone surrogate", "/v1/track", {"userId": "\ud800", "event": "e"}, 400),
    ("anonymousId lone surrogate", "/v1/track", {"anonymousId": "a\udc00", "event": "e"}, 400),
    ("batch sentAt year 0 in UTC", "/v1/batch",
     {"batch": [{"type": "track", "userId": "u", "event": "e"}], "sentAt": "0001-01-01T00:00:00+01:00"}, 400),
    ("sentAt year 0 in UTC", "/v1/track",
     {"userId": "u", "event": "e", "sentAt": "0001-01-01T00:00:00+01:00"}, 400),
]  # fmt: skip


@pytest.mark.parametrize(("name", "path", "body", "status"), REVIEW_500S, ids=[c[0] for c in REVIEW_500S])
def test_the_reviews_500s_are_4xx_with_a_reason(ingest, name, path, body, status):
    response = httpx.post(f"{ingest}{path}", content=wire(body), auth=AUTH, headers=JSON)
    assert response.status_code == status, response.text
    assert response.json()["error"] and response.json()["detail"]


def test_a_batch_with_one_surrogate_id_keeps_the_others(ingest, topics):
    batch = [{"type": "track", "userId": "u", "event": "e", "messageId": "kept"},
             {"type": "track", "userId": "\ud800", "event": "e", "messageId": "bad"}]  # fmt: skip
    response = httpx.post(f"{ingest}/v1/batch", content=wire({"batch": batch}), auth=AUTH, headers=JSON)
    assert response.status_code == 200, response.text
    assert [r["index"] for r in response.json()["rejected"]] == [1]
    assert [r["value"]["messageId"] for r in read_topic(topics.kafka_bootstrap, topics.events_topic, 1)] == [
        "kept"
    ]


def test_a_body_write_key_with_a_lone_surrogate_is_401_also_via_the_pixel(ingest):
    body = {"userId": "u", "event": "e", "writeKey": "dev-write-key\ud800"}
    response = httpx.post(f"{ingest}/v1/track", content=wire(body), headers={"Content-Type": "text/plain"})
    assert response.status_code == 401, response.text
    data = base64.urlsafe_b64encode(wire(body)).decode()
    pixel = httpx.get(f"{ingest}/v1/pixel/track", params={"data": data})
    assert pixel.status_code == 401, pixel.text
    assert pixel.json()["error"] == "unauthorized"


def test_hostile_messages_never_get_a_5xx(ingest):
    """Hypothesis against the real app: surrogates and calendar-edge datetimes everywhere."""
    with httpx.Client(base_url=ingest, timeout=30) as http:

        @hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(hostile_message, hostile_batch)
        def probe(message, batch):
            for path, body, auth in [
                ("/v1/track", message, AUTH),
                ("/v1/identify", message, None),  # key (if any) from the body
                ("/v1/batch", batch, AUTH),
                ("/v1/batch", batch, None),
            ]:
                response = http.post(path, content=wire(body), auth=auth, headers=JSON)
                assert response.status_code < 500, (path, body, response.text)
            pixel = http.get("/v1/pixel/track", params={"data": base64.b64encode(wire(message)).decode()})
            assert pixel.status_code < 500, (message, pixel.text)

        probe()
        assert http.get("/healthz").status_code == 200


def test_rejected_events_are_charged_to_the_rate_limit(topics):
    """5 rejected events exhaust a 5-event bucket: the next good event waits."""
    limited = topics.model_copy(
        update={"rate_limit_per_s": 0.5, "rate_limit_burst": 5.0, "write_keys": "k1:one"}
    )
    bad = [{"type": "track", "event": "no user"}] * 4
    with running_ingest(limited) as url, httpx.Client(base_url=url) as http:
        first = http.post("/v1/batch", json={"batch": [{"type": "track", "userId": "u", "event": "e"}, *bad]},
                          auth=("k1", ""))  # fmt: skip
        assert first.status_code == 200 and len(first.json()["rejected"]) == 4
        again = http.post("/v1/track", json={"userId": "u", "event": "e"}, auth=("k1", ""))
        assert again.status_code == 429, again.text
