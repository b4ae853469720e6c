"""Watching the stream's batch notices (topic ``batches``): the moment an object is in S3
and its notice sent, the worker is between its upload and its offset commit."""

from __future__ import annotations

import time

import orjson
from kafka import KafkaConsumer, TopicPartition

from eventpipe.settings import Settings


class NoticeWatcher:
    def __init__(self, settings: Settings) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
        parts = self.consumer.partitions_for_topic(settings.batches_topic) or set()
        self.consumer.assign([TopicPartition(settings.batches_topic, p) for p in parts])
        self.consumer.seek_to_end()
        self.seen: list[dict] = []

    def wait_for_new(self, timeout_s: float = 30.0, table: str = "events") -> dict:
        """Blocks until a new notice for ``table`` arrives; returns it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for records in self.consumer.poll(timeout_ms=100).values():
                for record in records:
                    notice = orjson.loads(record.value)
                    self.seen.append(notice)
                    if notice.get("table") == table:
                        return notice
        raise AssertionError(f"no batch notice for {table} within {timeout_s}s")

    def close(self) -> None:
        self.consumer.close()
