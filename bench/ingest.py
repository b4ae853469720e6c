"""Ingest benchmark: the collector (one uvicorn worker) vs a naive baseline collector and
vs Kafka's own producer ceiling, side by side in one run, on loopback, bounded in time."""

from __future__ import annotations

import re
import subprocess
import uuid

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic

from bench.common import ROOT, VENV_BIN, process, python_exe, wrk
from tests.support.servers import free_port

BATCH = 100
SECONDS = 10


def sample_events(n: int) -> list[dict]:
    return [
        {
            "type": "track",
            "userId": f"user-{i % 997}",
            "event": "Product Viewed",
            "messageId": str(uuid.uuid4()),
            "timestamp": "2026-11-26T10:00:00.000Z",
            "properties": {"product_id": f"p-{i}", "price": 19.99, "currency": "EUR", "category": "books"},
            "context": {"library": {"name": "analytics.js", "version": "4.1.0"}, "page": {"path": "/p"}},
        }
        for i in range(n)
    ]


def ensure_topic(bootstrap: str, name: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, 6, 1)])
    except Exception:  # exists already
        pass
    finally:
        admin.close()


def kafka_ceiling(bootstrap: str, topic: str, record_size: int, records: int = 300_000) -> float:
    """org.apache.kafka.tools.ProducerPerformance from the same jars, same message size."""
    libs = ROOT / ".local" / "kafka" / "libs"
    out = subprocess.run(
        [
            "java",
            "-Xmx512m",
            "-cp",
            f"{libs}/*",
            "org.apache.kafka.tools.ProducerPerformance",
            "--topic",
            topic,
            "--num-records",
            str(records),
            "--record-size",
            str(record_size),
            "--throughput",
            "-1",
            "--producer-props",
            f"bootstrap.servers={bootstrap}",
            "acks=all",
            "enable.idempotence=true",
            "linger.ms=5",
            "batch.size=524288",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    found = re.findall(r"([\d.]+) records/sec", out)
    return float(found[-1])


def collector(kind: str, topic: str, bootstrap: str, client: str = "kafka-python", compression: str = "lz4"):
    port = free_port()
    env = {
        "EVENTPIPE_INGEST_PORT": str(port),
        "EVENTPIPE_EVENTS_TOPIC": topic,
        "EVENTPIPE_KAFKA_BOOTSTRAP": bootstrap,
        "EVENTPIPE_KAFKA_CLIENT": client,
        "EVENTPIPE_KAFKA_COMPRESSION": compression,
    }
    if kind == "naive":
        args = [
            python_exe(),
            "-m",
            "uvicorn",
            "bench.naive_collector:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ]
        health = f"http://127.0.0.1:{port}/docs"
    else:
        args = [str(VENV_BIN / "eventpipe"), "ingest"]
        health = f"http://127.0.0.1:{port}/readyz"
    return port, process(args, env, health)


def measure(kind: str, bootstrap: str, client: str = "kafka-python", seconds: int = SECONDS) -> dict:
    topic = f"bench-{kind}-{client}"
    ensure_topic(bootstrap, topic)
    events = sample_events(BATCH)
    port, proc = collector(kind, topic, bootstrap, client)
    with proc:
        base = f"http://127.0.0.1:{port}"
        batch = wrk(f"{base}/v1/batch", orjson.dumps({"batch": events}), seconds, connections=8)
        single = wrk(f"{base}/v1/track", orjson.dumps(events[0]), seconds, connections=32)
    return {
        "batch_events_per_s": batch["requests_per_s"] * BATCH,
        "batch_p50_ms": batch["p50_ms"],
        "batch_p99_ms": batch["p99_ms"],
        "batch_non_2xx": batch["non_2xx"],
        "single_requests_per_s": single["requests_per_s"],
        "single_p50_ms": single["p50_ms"],
        "single_p99_ms": single["p99_ms"],
        "single_non_2xx": single["non_2xx"],
    }


def broker_bytes_per_event(bootstrap: str, topic: str) -> float:
    """What the broker stores per event of ``topic``: its log size over its record count."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        size = sum(
            part["partition_size"]
            for broker in admin.describe_log_dirs()
            for log_dir in broker["log_dirs"]
            for found in log_dir["topics"]
            if found["name"] == topic
            for part in found["partitions"]
        )
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        records = sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()
        admin.close()
    return size / max(records, 1)


def compression(bootstrap: str = "127.0.0.1:9092", seconds: int = SECONDS) -> dict:
    """The collector with lz4 (the default) and with none, side by side: throughput, p99, and
    the bytes the broker stores per event (fresh topics, so only this run's records count)."""
    out: dict[str, float] = {}
    for codec in ("lz4", "none"):
        topic = f"bench-compression-{codec}-{uuid.uuid4().hex[:8]}"
        ensure_topic(bootstrap, topic)
        port, proc = collector("eventpipe", topic, bootstrap, compression=codec)
        with proc:
            batch = wrk(f"http://127.0.0.1:{port}/v1/batch", orjson.dumps({"batch": sample_events(BATCH)}),
                        seconds, connections=8)  # fmt: skip
        out[f"{codec}_batch_events_per_s"] = batch["requests_per_s"] * BATCH
        out[f"{codec}_batch_p99_ms"] = batch["p99_ms"]
        out[f"{codec}_broker_bytes_per_event"] = broker_bytes_per_event(bootstrap, topic)
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            admin.delete_topics([topic])  # a fresh topic per run: leave none behind
        finally:
            admin.close()
    return out


def run(bootstrap: str = "127.0.0.1:9092") -> dict:
    ours = measure("eventpipe", bootstrap, "kafka-python")
    confluent = measure("eventpipe", bootstrap, "confluent")
    naive = measure("naive", bootstrap, seconds=5)
    record_size = len(orjson.dumps(sample_events(1)[0])) + 250  # + server-side fields
    ensure_topic(bootstrap, "bench-ceiling")
    ceiling = kafka_ceiling(bootstrap, "bench-ceiling", record_size)
    baseline = max(naive["batch_events_per_s"], 1e-9)
    return {
        **ours,
        "baseline_events_per_s": naive["batch_events_per_s"],
        "baseline_single_requests_per_s": naive["single_requests_per_s"],
        "kafka_ceiling_events_per_s": ceiling,
        "confluent_batch_events_per_s": confluent["batch_events_per_s"],
        "confluent_batch_p99_ms": confluent["batch_p99_ms"],
        "confluent_single_requests_per_s": confluent["single_requests_per_s"],
        **compression(bootstrap),
        "speedup_vs_baseline": ours["batch_events_per_s"] / baseline,
        "confluent_speedup_vs_baseline": confluent["batch_events_per_s"] / baseline,
    }


if __name__ == "__main__":
    import sys

    # ``python -m bench.ingest compression``: only the lz4-vs-none comparison
    result = compression() if sys.argv[1:] == ["compression"] else run()
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
