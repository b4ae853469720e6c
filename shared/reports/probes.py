"""Adapters behind ``eventpipe status``: ask each stage how current it is.

Every probe returns a ``StageStatus`` and never raises for a stage that is down or
missing: it says "not running"/"unknown" with the library's own error in the detail
(each probe catches only its client's error types, so programming errors still surface).
Network calls are bounded by short timeouts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from botocore.exceptions import BotoCoreError, ClientError
from kafka.errors import KafkaError
from prometheus_client.parser import text_string_to_metric_families

from eventpipe.errors import WarehouseError
from eventpipe.keys import RAW_PREFIX
from eventpipe.reports.freshness import DOWN, OK, STALE, UNKNOWN, StageStatus, age_text
from eventpipe.settings import Settings

TIMEOUT_S = 3.0


def _metric_sum(text: str, name: str) -> float | None:
    total = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                total = (total or 0.0) + sample.value
    return total


def ingest(settings: Settings) -> StageStatus:
    base = f"http://{settings.ingest_host}:{settings.ingest_port}"
    try:
        with httpx.Client(timeout=TIMEOUT_S) as client:
            health = client.get(f"{base}/healthz")
            metrics = client.get(f"{base}/metrics")
    except httpx.HTTPError as exc:
        return StageStatus("ingest", DOWN, f"{base} does not answer ({type(exc).__name__})")
    if health.status_code != 200:
        return StageStatus("ingest", DOWN, f"/healthz answered {health.status_code}")
    accepted = _metric_sum(metrics.text, "eventpipe_ingest_events_accepted_total")
    kafka_up = _metric_sum(metrics.text, "eventpipe_ingest_kafka_reachable")
    detail = f"healthy; {accepted or 0:.0f} events accepted since start"
    if kafka_up == 0:
        return StageStatus("ingest", STALE, detail + "; Kafka unreachable at the last probe")
    return StageStatus("ingest", OK, detail)


def kafka_lag(settings: Settings, max_lag: int = 10_000) -> StageStatus:
    """Lag of the stream's consumer group behind the end of the events topic."""
    from kafka import KafkaAdminClient, TopicPartition
    from kafka.admin import OffsetSpec

    group, topic = settings.stream_app_id, settings.events_topic
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=settings.kafka_bootstrap,
            request_timeout_ms=5000,
            bootstrap_timeout_ms=3000,
            client_id="eventpipe-status",
        )
    except KafkaError as exc:
        return StageStatus("kafka", DOWN, f"{settings.kafka_bootstrap}: {type(exc).__name__}")
    try:
        described = admin.describe_topics([topic])
        if not described or described[0].get("error_code"):
            return StageStatus("kafka", UNKNOWN, f"topic {topic!r} does not exist")
        parts = [TopicPartition(topic, p["partition_index"]) for p in described[0]["partitions"]]
        ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in parts})
        try:
            committed = admin.list_group_offsets({group: None}).get(group, {})
        except KafkaError:  # no coordinator / group yet: the stream never committed
            committed = {}
    except KafkaError as exc:
        return StageStatus("kafka", UNKNOWN, f"topic {topic!r}: {type(exc).__name__}")
    finally:
        admin.close()
    end_total = sum(o.offset for o in ends.values())
    mine = {tp: meta.offset for tp, meta in committed.items() if tp.topic == topic and meta.offset >= 0}
    if not mine:
        return StageStatus(
            "kafka", UNKNOWN, f"{end_total} events in {topic!r}; group {group!r} has committed nothing"
        )
    lag = sum(max(0, ends[tp].offset - mine.get(tp, 0)) for tp in parts if tp in ends)
    state = OK if lag <= max_lag else STALE
    return StageStatus("kafka", state, f"group {group!r} lags {lag} events behind {topic!r} ({end_total})")


def s3_raw(
    settings: Settings, client: Any, now: datetime, stale_minutes: float, lookback_hours: int = 48
) -> StageStatus:
    """The newest raw object (``client``: ``eventpipe.bootstrap.build_s3``'s): hour partitions
    listed from the current hour backwards.

    Plain prefix listings only (no ``Delimiter``, which some S3 API servers answer
    wrongly); raw keys are partitioned by receive hour, so the first non-empty hour holds it.
    """
    from eventpipe.s3 import list_keys

    objects: list[dict[str, Any]] = []
    try:
        for back in range(lookback_hours + 1):
            hour = now - timedelta(hours=back)
            prefix = f"{settings.s3_prefix}{RAW_PREFIX}dt={hour:%Y-%m-%d}/hr={hour:%H}/"
            objects = list(list_keys(client, settings.s3_bucket, prefix))
            if objects:
                break
    except (BotoCoreError, ClientError) as exc:
        return StageStatus("s3", DOWN, f"{settings.s3_endpoint}: {type(exc).__name__}")
    if not objects:
        return StageStatus("s3", UNKNOWN, f"no raw object in the last {lookback_hours} h")
    newest = max(objects, key=lambda o: o["LastModified"])
    age = (now - newest["LastModified"].astimezone(UTC)).total_seconds()
    state = OK if age <= stale_minutes * 60 else STALE
    return StageStatus("s3", state, f"newest raw object written {age_text(age)} ago: {newest['Key']}")


def service_up(name: str, port: int, host: str = "127.0.0.1") -> StageStatus:
    """A service known only by its metrics endpoint (stream, loader)."""
    try:
        response = httpx.get(f"http://{host}:{port}/metrics", timeout=TIMEOUT_S)
    except httpx.HTTPError:
        return StageStatus(name, DOWN, f"no metrics at {host}:{port}")
    if response.status_code != 200:
        return StageStatus(name, DOWN, f"metrics at {host}:{port} answered {response.status_code}")
    return StageStatus(name, OK, f"serving metrics at {host}:{port}")


def warehouse_error(exc: WarehouseError) -> StageStatus:
    return StageStatus("warehouse", DOWN, str(exc).splitlines()[0])
