"""Reading a test topic back from the real Kafka."""

from __future__ import annotations

import time

import orjson
from kafka import KafkaConsumer


def read_topic(bootstrap: str, topic: str, expect: int, timeout_s: float = 20.0) -> list[dict]:
    """All records of ``topic`` (from the beginning), waiting until ``expect`` arrived or time is up."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    records: list[dict] = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            for message in consumer:
                records.append(
                    {"key": message.key, "value": orjson.loads(message.value), "partition": message.partition}
                )
            if len(records) >= expect:
                # one more short poll: more than expected is a failure the caller must see
                for message in consumer:
                    records.append({"key": message.key, "value": orjson.loads(message.value)})
                break
    finally:
        consumer.close()
    return records
