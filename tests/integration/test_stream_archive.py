"""The stream worker (a real subprocess) against the real Kafka and S3 API server: every
event archived exactly once, aggregate deltas equal to the reference for in-order input,
batch notices, rejected records, and a full replay that rewrites the same objects."""

from __future__ import annotations

import itertools
from collections import Counter

import orjson
import pytest

from eventpipe.events import user_key
from eventpipe.keys import parse_raw_key
from eventpipe.s3 import list_keys
from tests.reference import truth
from tests.support.stream import (
    Worker,
    agg_sums,
    cleanup,
    committed_offsets,
    produce,
    produce_events,
    raw_line_counts,
    raw_objects,
    synthetic_events,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def stream(topics, s3, tmp_path):
    """Per-test topics, prefix and app id; the state changelog and objects go afterwards."""
    yield topics
    cleanup(s3, topics)


def read_notices(settings, expected: int, timeout_s: float = 10) -> list[dict]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        settings.batches_topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=int(timeout_s * 1000),
    )
    notices = []
    for message in consumer:
        notices.append(orjson.loads(message.value))
        if len(notices) >= expected:
            break
    consumer.close()
    return notices


def test_every_event_archived_once_and_aggregates_equal_the_reference(stream, s3, tmp_path):
    events = synthetic_events(users=120)
    bad = [(b"anon-x", b"{not json"), (b"anon-y", orjson.dumps({"type": "page"}))]
    produce_events(stream, events[: len(events) // 2])
    produce(stream, bad)
    produce_events(stream, events[len(events) // 2 :])
    values = Counter(orjson.dumps(e) for e in events)

    worker = Worker(stream, tmp_path, archive_max_events=150)
    try:
        worker.wait_ready()
        wait_until(lambda: sum(raw_line_counts(s3, stream).values()) >= len(events), 45, "the raw archive")
        wait_until(lambda: sum(committed_offsets(stream).values()) == len(events) + len(bad), 20, "commits")
        metrics = worker.metrics()
    finally:
        worker.stop()

    assert raw_line_counts(s3, stream) == values  # each Kafka record exactly once, bytes unchanged
    objects = raw_objects(s3, stream)
    spans: dict[int, list[tuple[int, int]]] = {}
    for key, meta, lines in objects:
        _, _, partition, first = parse_raw_key(key)
        assert int(meta["count"]) == len(lines) <= 150
        assert {orjson.loads(line)["receivedAt"][:13] for line in lines} == {
            orjson.loads(lines[0])["receivedAt"][:13]
        }  # never spans an hour
        assert all(user_key(orjson.loads(line)) for line in lines)
        spans.setdefault(partition, []).append((first, int(meta["last-offset"])))
    for runs in spans.values():  # cuts tile each partition without overlap
        runs.sort()
        assert all(a_last < b_first for (_, a_last), (b_first, _) in itertools.pairwise(runs))

    assert agg_sums(s3, stream) == truth(events, stitch=False)

    agg_objects = list(list_keys(s3, stream.s3_bucket, stream.s3_prefix + "agg/"))
    notices = read_notices(stream, expected=len(objects) + len(agg_objects))
    raw_notices = {n["key"] for n in notices if n["table"] == "events"}
    assert raw_notices == {key for key, _, _ in objects}
    assert {n["key"] for n in notices if n["table"] != "events"} == {o["Key"] for o in agg_objects}
    assert {n["table"] for n in notices} == {
        "events",
        "engagement_daily",
        "experiment_daily",
        "experiment_assignments",
    }

    rejected = list(list_keys(s3, stream.s3_bucket, stream.s3_prefix + "rejected/"))
    assert rejected, "bad records must land in rejected/"
    assert 'eventpipe_stream_events_total{outcome="rejected"} 2.0' in metrics
    assert "eventpipe_stream_state_entries" in metrics and "eventpipe_stream_lag" in metrics


def test_a_full_replay_rewrites_the_same_objects(stream, s3, tmp_path):
    """Offsets reset to zero (as after losing every commit): the worker finds each cut it
    wrote, cuts at the recorded last offset and writes the same keys and bytes again."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    events = synthetic_events(users=60, seed=5)
    produce_events(stream, events)
    worker = Worker(stream, tmp_path, name="first", archive_max_events=100_000)
    try:
        worker.wait_ready()
        wait_until(lambda: sum(committed_offsets(stream).values()) == len(events), 45, "commits")
    finally:
        worker.stop()

    def snapshot() -> dict[str, bytes]:
        out = {}
        for prefix in ("raw/", "agg/"):
            for obj in list_keys(s3, stream.s3_bucket, stream.s3_prefix + prefix):
                out[obj["Key"]] = s3.get_object(Bucket=stream.s3_bucket, Key=obj["Key"])["Body"].read()
        return out

    before = snapshot()
    resetter = KafkaConsumer(bootstrap_servers=stream.kafka_bootstrap, group_id=stream.stream_app_id)
    tps = [TopicPartition(stream.events_topic, p) for p in committed_offsets(stream)]
    resetter.assign(tps)
    resetter.commit({tp: OffsetAndMetadata(0, "", -1) for tp in tps})
    resetter.close()

    replay = Worker(stream, tmp_path, name="replay", archive_max_events=100_000, flush_interval_s="0.2")
    try:
        replay.wait_ready()
        wait_until(lambda: sum(committed_offsets(stream).values()) == len(events), 45, "commits")
        metrics = replay.metrics()
    finally:
        replay.stop()
    assert 'eventpipe_stream_cuts_total{reason="replay"}' in metrics
    assert snapshot() == before  # no second object, no changed content
    assert agg_sums(s3, stream) == truth(events, stitch=False)
