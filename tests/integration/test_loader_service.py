"""The loader as a service: batch notices from Kafka, /metrics, SIGTERM."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time

import httpx
import orjson
import pytest
from kafka import KafkaProducer, TopicPartition

from eventpipe.bootstrap import build_loader
from eventpipe.loader.discovery import Notices
from eventpipe.loader.runner import Limits
from tests.support.loader import (
    expected_events,
    loaded_events,
    query,
    synthetic_events,
    write_agg,
    write_raw,
)
from tests.support.pipeline import child_env
from tests.support.servers import free_port

pytestmark = pytest.mark.integration


def publish_notices(settings, keys: list[str], table: str = "events") -> None:
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    for key in keys:
        notice = {"key": key, "table": table, "rows": 0, "partition": 0, "first_offset": 0, "last_offset": 0,
                  "written_at": "2026-11-20T12:00:00.000Z"}  # fmt: skip
        producer.send(settings.batches_topic, key=key.encode(), value=orjson.dumps(notice)).get(10)
    producer.close()


def test_notices_alone_load_batches_and_commit_offsets(settings, topics, s3, pg_schema):
    events = synthetic_events(users=10)
    keys = write_raw(s3, settings, events, per_object=100)
    publish_notices(settings, keys)
    notices = Notices(settings)
    loader = build_loader(settings, s3=s3, notices=notices, limits=Limits(scan_interval_s=math.inf))
    try:
        loader.start()
        deadline, loaded = time.monotonic() + 30, 0
        while loaded < len(keys) and time.monotonic() < deadline:
            loaded += loader.run_once(poll_s=1.0)
        assert loaded == len(keys)
        assert loaded_events(settings) == expected_events(events)
        loader.run_once(poll_s=0.1)  # a round with nothing pending commits the offsets
        partitions = notices.consumer.partitions_for_topic(settings.batches_topic)
        committed = sum(
            notices.consumer.committed(TopicPartition(settings.batches_topic, p)) or 0 for p in partitions
        )
        assert committed == len(keys)
    finally:
        loader.close()


def test_service_serves_metrics_loads_and_stops_on_sigterm(settings, topics, s3, pg_schema):
    events = synthetic_events(users=10)
    keys = write_raw(s3, settings, events, per_object=100)
    keys.append(write_agg(s3, settings, "engagement_daily", [{"day": "2026-11-20", "event": "x",
                "received_day": "2026-11-20", "event_count": 1, "user_count": 1}], 0))  # fmt: skip
    port = free_port()
    env = child_env(settings, loader_port=port)
    child = subprocess.Popen(
        [sys.executable, "-m", "eventpipe.cli", "loader"], env=env, stderr=subprocess.PIPE
    )
    try:
        deadline, text = time.monotonic() + 40, ""
        while time.monotonic() < deadline:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                if f'eventpipe_loader_batches_loaded_total{{table="events"}} {len(keys) - 1}.0' in text:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert f'eventpipe_loader_batches_loaded_total{{table="events"}} {len(keys) - 1}.0' in text
        wanted = (
            "eventpipe_loader_freshness_seconds",
            "eventpipe_loader_unloaded_old_objects 0.0",
            "eventpipe_loader_event_latency_seconds_bucket",
            "eventpipe_loader_ledger_objects",
            "eventpipe_loader_load_duration_seconds_bucket",
            "eventpipe_loader_warehouse_up 1.0",
        )
        for name in wanted:
            assert name in text
        assert loaded_events(settings) == expected_events(events)
        assert query(settings, "SELECT event_count FROM engagement_daily") == [(1,)]
        child.send_signal(signal.SIGTERM)
        assert child.wait(20) == 0
        assert child.stderr is not None
        logs = [orjson.loads(line) for line in child.stderr.read().splitlines() if line.startswith(b"{")]
        assert any(entry["msg"] == "loader stopped" for entry in logs)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)
