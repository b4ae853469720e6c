"""A stream worker frozen (SIGSTOP) with open cuts past its session timeout loses its
partitions; the new owner replays them and writes longer cuts at the same deterministic
keys. Resumed (SIGCONT), the old worker must be fenced: it writes nothing for partitions
it lost (fault scenario 6 found it overwriting the new owner's objects), and every event
ends up in exactly one raw object."""

from __future__ import annotations

import signal
import time

import orjson
import pytest

from tests.reference import truth
from tests.support.stream import (
    Worker,
    agg_sums,
    assert_exactly_once,
    cleanup,
    committed_offsets,
    metric,
    produce_events,
    raw_count,
    raw_objects,
    synthetic_events,
    thirds,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration
# no count cut: a cut stays open up to the flush bound, so the frozen worker holds open cuts
OPEN_CUTS = {"archive_max_events": 100_000, "flush_interval_s": "4"}
SESSION_TIMEOUT_S = 10  # the stream consumer's session.timeout.ms


@pytest.fixture
def stream(topics, s3):
    yield topics
    cleanup(s3, topics)


def snapshot(s3, settings) -> dict[str, tuple[str, list[bytes]]]:
    return {key: (meta["last-offset"], lines) for key, meta, lines in raw_objects(s3, settings)}


def logged(worker: Worker) -> list[dict]:
    lines = worker.log_path.read_bytes().splitlines()
    return [orjson.loads(line) for line in lines if line.startswith(b"{")]


def test_a_worker_resumed_after_losing_its_partitions_writes_nothing_for_them(stream, s3, tmp_path):
    events = synthetic_events(users=150, seed=24)
    first, second, third = thirds(events)
    stale = Worker(stream, tmp_path, name="stale", **OPEN_CUTS)
    owner = None
    try:
        stale.wait_ready()
        produce_events(stream, first)
        processed = 'eventpipe_stream_events_total{outcome="processed"}'
        wait_until(lambda: metric(stale.metrics(), processed) >= len(first), 20, "the first third read")
        assert raw_count(s3, stream) == 0  # its cuts are open (4 s flush bound)...
        stale.proc.send_signal(signal.SIGSTOP)  # ...and stay open while it is frozen
        frozen_at = time.monotonic()

        produce_events(stream, second)
        owner = Worker(stream, tmp_path, name="owner", **OPEN_CUTS)
        owner.wait_ready()
        # the group expels the frozen worker; the owner replays from offset 0 and writes
        # longer cuts (first + second third) at the keys the frozen worker's cuts would use
        wait_until(
            lambda: sum(committed_offsets(stream).values()) == len(first) + len(second),
            45,
            "the owner's commits",
        )
        assert time.monotonic() - frozen_at > SESSION_TIMEOUT_S
        before = snapshot(s3, stream)
        assert before

        stale.proc.send_signal(signal.SIGCONT)
        wait_until(
            lambda: any(e["msg"].startswith("partition fenced") for e in logged(stale)), 20, "the fence"
        )
        assert snapshot(s3, stream) == before  # no object replaced, none added
        assert metric(stale.metrics(), "eventpipe_stream_fenced_total") >= 1

        produce_events(stream, third)  # both workers share the partitions again
        wait_until(lambda: sum(committed_offsets(stream).values()) == len(events), 45, "all commits")
    finally:
        if stale.proc.poll() is None:
            stale.proc.send_signal(signal.SIGCONT)
        stale.stop()
        if owner is not None:
            owner.stop()
    after = snapshot(s3, stream)
    assert all(after[key] == value for key, value in before.items())  # still unchanged
    assert_exactly_once(s3, stream, events)
    assert agg_sums(s3, stream) == truth(events, stitch=False)
