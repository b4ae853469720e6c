"""Faults with real worker processes, the real Kafka and S3 API server: ``kill -9`` in the
middle of a stream then a restart, and two workers sharing the partitions through
rebalances. Each time: no event missing from ``raw/``, none in two objects, and the
aggregate deltas still sum to the reference (in-order input)."""

from __future__ import annotations

import time
from urllib.parse import urlparse

import orjson
import pytest

from tests.reference import truth
from tests.support.links import FlakyLink
from tests.support.stream import (
    Worker,
    agg_sums,
    assert_exactly_once,
    cleanup,
    committed_offsets,
    metric,
    produce_events,
    raw_count,
    synthetic_events,
    thirds,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration
SMALL_CUTS = {"archive_max_events": 60, "flush_interval_s": "1"}


@pytest.fixture
def stream(topics, s3):
    yield topics
    cleanup(s3, topics)


def test_kill_9_mid_stream_then_restart(stream, s3, tmp_path):
    events = synthetic_events(users=150, seed=21)
    first, second, third = thirds(events)
    produce_events(stream, first)
    victim = Worker(stream, tmp_path, name="victim", **SMALL_CUTS)
    try:
        victim.wait_ready()
        wait_until(lambda: raw_count(s3, stream) > len(first) // 2, 30, "the first objects")
        produce_events(stream, second)
        time.sleep(0.5)  # mid-stream: some cuts written, others open or uploading
    finally:
        victim.kill()
    produce_events(stream, third)

    survivor = Worker(stream, tmp_path, name="survivor", **SMALL_CUTS)
    try:
        survivor.wait_ready()
        wait_until(
            lambda: sum(committed_offsets(stream).values()) == len(events), 50, "all offsets committed"
        )
    finally:
        survivor.stop()
    assert_exactly_once(s3, stream, events)
    assert agg_sums(s3, stream) == truth(events, stitch=False)  # exact: the state changelog + offset tags


def test_two_workers_share_partitions_through_rebalances(stream, s3, tmp_path):
    events = synthetic_events(users=150, seed=22)
    first, second, third = thirds(events)
    produce_events(stream, first)
    a = Worker(stream, tmp_path, name="a", **SMALL_CUTS)
    b = None
    try:
        a.wait_ready()
        wait_until(lambda: raw_count(s3, stream) > 0, 30, "the first objects")
        b = Worker(stream, tmp_path, name="b", **SMALL_CUTS)  # joins: partitions split
        b.wait_ready()
        produce_events(stream, second)
        wait_until(lambda: a.partitions() and b.partitions(), 30, "a and b sharing the partitions")
        assert not set(a.partitions()) & set(b.partitions())
        wait_until(lambda: raw_count(s3, stream) > len(first) + len(second) // 2, 30, "both writing")
        a.stop()  # leaves the group: b takes every partition
        produce_events(stream, third)
        wait_until(
            lambda: sum(committed_offsets(stream).values()) == len(events), 40, "all offsets committed"
        )
    finally:
        a.stop()
        if b is not None:
            b.stop()
    assert_exactly_once(s3, stream, events)
    assert agg_sums(s3, stream) == truth(events, stitch=False)


def test_s3_outage_commits_nothing_then_catches_up(stream, s3, tmp_path):
    events = synthetic_events(users=80, seed=23)
    first, rest = events[: len(events) // 2], events[len(events) // 2 :]
    target = urlparse(stream.s3_endpoint)
    link = FlakyLink((target.hostname, target.port))
    produce_events(stream, first)
    worker = Worker(stream, tmp_path, name="s3down", s3_endpoint=link.endpoint, flush_interval_s="1")
    try:
        worker.wait_ready()
        wait_until(lambda: sum(committed_offsets(stream).values()) == len(first), 30, "the first half")
        link.cut()
        produce_events(stream, rest)
        wait_until(
            lambda: metric(worker.metrics(), "eventpipe_stream_flush_failures_total") >= 1, 30, "a failure"
        )
        text = worker.metrics()
        assert metric(text, "eventpipe_stream_s3_up") == 0
        assert metric(text, "eventpipe_stream_s3_errors_total") >= 6  # bounded retries, each counted
        assert sum(committed_offsets(stream).values()) == len(first)  # nothing committed unwritten
        assert worker.proc.poll() is None  # still running
        link.restore()
        wait_until(lambda: sum(committed_offsets(stream).values()) == len(events), 40, "catching up")
        assert metric(worker.metrics(), "eventpipe_stream_s3_up") == 1
    finally:
        worker.stop()
        link.close()
    logged = [
        orjson.loads(line) for line in worker.log_path.read_bytes().splitlines() if line.startswith(b"{")
    ]
    assert any(entry["msg"].startswith("cut abandoned") for entry in logged)
    assert_exactly_once(s3, stream, events)
    assert agg_sums(s3, stream) == truth(events, stitch=False)
