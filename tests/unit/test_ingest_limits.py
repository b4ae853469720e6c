"""What one request may cost: published bytes (amplification) and the per-key rate limit."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime

import orjson
import pytest

from eventpipe.errors import PayloadTooLarge
from eventpipe.ingest.collect import SERVER_FIELDS_BYTES, RequestInfo, collect
from eventpipe.ingest.ratelimit import RateLimiter
from eventpipe.settings import PRODUCTION_RATE_LIMIT_PER_S, Settings

INFO = RequestInfo(datetime(2026, 11, 26, tzinfo=UTC), "dev", "203.0.113.255", 32 * 1024, 2500)


def tiny(n: int) -> list[dict]:
    return [{"type": "track", "userId": "u", "event": "e"} for _ in range(n)]


def test_the_reviewers_amplification_request_is_refused_before_it_expands():
    """2,500 tiny events + a 30 KB batch context: 457 bytes gzipped, 76 MB published before."""
    body = {"batch": tiny(2500), "context": {"pad": "x" * 30_000}}
    assert len(gzip.compress(orjson.dumps(body))) < 1000  # what the attacker sends
    with pytest.raises(PayloadTooLarge) as caught:
        collect(body, None, INFO)
    assert caught.value.reason == "context_too_large"


def test_a_context_under_its_cap_still_cannot_expand_past_the_budget():
    body = {"batch": tiny(2500), "context": {"pad": "x" * 7_000}}  # 7 KB x 2,500 = 17 MB
    with pytest.raises(PayloadTooLarge) as caught:
        collect(body, None, INFO)
    assert caught.value.reason == "published_too_large"


def test_rejected_events_count_toward_the_budget():
    """Dead letters are published too: 10 events with an 8 KB context (82 KB) fit a 100 KB
    budget, a 30 KB rejected event on top of them does not."""
    info = RequestInfo(INFO.received_at, "dev", None, 32 * 1024, 2500, max_request_bytes=100 * 1024)
    context = {"pad": "z" * 8000}
    assert len(collect({"batch": tiny(10), "context": context}, None, info).records) == 10
    bad = {"type": "track", "event": "no user", "properties": {"pad": "y" * 30_000}}
    body = {"batch": [*tiny(10), bad], "context": context}
    assert len(orjson.dumps(body)) < 50 * 1024
    with pytest.raises(PayloadTooLarge):
        collect(body, None, info)


def test_a_realistic_full_batch_passes_and_stays_within_its_budget():
    events = [
        {
            "type": "track",
            "userId": f"user-{i}",
            "event": "Product Viewed",
            "messageId": f"m-{i}",
            "timestamp": "2026-11-26T10:00:00.000Z",
            "properties": {"product_id": f"p-{i}", "price": 19.99, "category": "books"},
        }
        for i in range(2500)
    ]
    context = {"library": {"name": "analytics-python", "version": "2.3.3"}, "locale": "en-GB"}
    body = {"batch": events, "context": context, "sentAt": "2026-11-26T10:00:01.000Z"}
    assert len(orjson.dumps(body)) < INFO.max_request_bytes
    out = collect(body, None, INFO)
    assert len(out.records) == 2500
    assert sum(out.sizes) <= INFO.publish_budget(2500)


def test_server_fields_allowance_covers_what_normalisation_adds():
    """The budget's per-event allowance is not a guess: the smallest event grows by less."""
    for kind, message in [
        ("track", {"userId": "u", "event": "e"}),
        ("alias", {"userId": "u", "previousId": "p"}),
        ("group", {"anonymousId": "a", "groupId": "g"}),
        ("page", {"userId": "u", "timestamp": "2026-11-26T10:00:00Z", "sentAt": "2026-11-26T10:00:01Z"}),
    ]:
        out = collect(message, kind, INFO)
        grown = out.sizes[0] - len(orjson.dumps(message))
        assert 0 < grown <= SERVER_FIELDS_BYTES, (kind, grown)


def admitted_in_10s(limiter: RateLimiter, events: int, every_s: float) -> int:
    """Events admitted when a key sends ``events`` per request every ``every_s`` for 10 s."""
    admitted = 0
    for step in range(round(10 / every_s)):
        if limiter.retry_after("k", events, step * every_s) == 0:
            admitted += events
    return admitted


def test_a_batch_bigger_than_the_bucket_is_charged_in_full():
    """At 100/s with a 200 burst, 2,500-event batches for 10 s admit one batch, not five."""
    limiter = RateLimiter(rate=100, burst=200)
    assert admitted_in_10s(limiter, 2500, 0.01) == 2500  # the first: 2,300 of debt takes 23 s to repay
    assert limiter.retry_after("k", 1, 10.0) == pytest.approx(13.01, abs=0.1)


def test_over_a_window_a_key_gets_burst_plus_rate_plus_one_request():
    admitted = admitted_in_10s(RateLimiter(rate=100, burst=200), 150, 0.05)
    assert 200 + 100 * 10 - 150 <= admitted <= 200 + 100 * 10 + 150


def test_bytes_are_charged_per_key():
    limiter = RateLimiter(rate=0, bytes_rate=1000, bytes_burst=1000)
    assert limiter.bytes_retry_after("k", 1000, 0.0) == 0
    assert limiter.bytes_retry_after("k", 500, 0.0) == pytest.approx(0.5)
    assert limiter.bytes_retry_after("other", 1000, 0.0) == 0
    assert limiter.retry_after("k", 10**6, 0.0) == 0  # the event limit is off


def test_rate_limit_is_on_by_default_in_production_only():
    prod = Settings(
        env="production",
        write_keys="k" * 32 + ":web",
        warehouse_dsn="postgresql://eventpipe:" + "p" * 24 + "@db:5432/eventpipe",
        s3_secret_key="s" * 32,
    )
    assert prod.effective_rate_limit_per_s == PRODUCTION_RATE_LIMIT_PER_S
    assert prod.effective_rate_limit_bytes_per_s > 0
    assert Settings().effective_rate_limit_per_s == 0
    assert prod.model_copy(update={"rate_limit_per_s": 0.0}).effective_rate_limit_per_s == 0  # explicit off


def test_producer_compression_is_on_and_its_codec_installed():
    from eventpipe.ingest.publisher import require_codec

    settings = Settings()
    assert settings.kafka_client == "confluent"  # librdkafka by default (issue 16); lz4 built in
    assert settings.kafka_compression == "lz4"
    # kafka-python needs the lz4 package for it: a dependency, so this raises only if it is missing
    require_codec(settings.model_copy(update={"kafka_client": "kafka-python"}))
