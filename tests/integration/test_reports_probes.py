"""``eventpipe status`` probes against the real Kafka and S3 API server (per-test topics,
consumer group and key prefix, so a running local stack is never disturbed)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from eventpipe.keys import raw_key
from eventpipe.reports import probes
from eventpipe.settings import Settings
from eventpipe.timeutil import utcnow

pytestmark = pytest.mark.integration


def test_kafka_lag_of_the_stream_group(topics: Settings) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    settings = topics
    assert probes.kafka_lag(settings).state == "unknown"  # the group never committed
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    for n in range(10):
        producer.send(settings.events_topic, b"{}", partition=n % 2)
    producer.flush(timeout=30)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=settings.stream_app_id)
    try:
        consumer.commit({TopicPartition(settings.events_topic, 0): OffsetAndMetadata(2, "", -1)})
    finally:
        consumer.close()
    status = probes.kafka_lag(settings)
    # partition 0: 5 produced, 2 committed -> 3; partition 1: 5 produced, nothing committed -> 5
    assert status.state == "ok" and "lags 8 events" in status.detail, status
    assert probes.kafka_lag(settings, max_lag=5).state == "stale"


def test_s3_newest_raw_object(settings: Settings, s3: Any) -> None:
    now = utcnow()
    assert probes.s3_raw(settings, s3, now, 10, lookback_hours=4).state == "unknown"  # nothing yet
    older, newer = raw_key(now - timedelta(hours=3), 0, 0), raw_key(now, 1, 42)
    for key in (newer, older):
        s3.put_object(Bucket=settings.s3_bucket, Key=settings.s3_prefix + key, Body=b"x")
    status = probes.s3_raw(settings, s3, now, 10)
    assert status.state == "ok" and status.detail.endswith(newer), status
    assert probes.s3_raw(settings, s3, now + timedelta(hours=1), 10).state == "stale"
    for key in (newer, older):
        s3.delete_object(Bucket=settings.s3_bucket, Key=settings.s3_prefix + key)
