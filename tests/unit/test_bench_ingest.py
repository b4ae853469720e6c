"""The ingest bench's pure parts: nearest-rank percentiles, the best-of-two rounds, the broker's GC pauses."""

from __future__ import annotations

import pytest

from bench.ingest import best_of
from bench.jvmgc import pauses, slow_in_pauses
from bench.openloop import open_loop, percentile


def test_nearest_rank_percentile():
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([7.0], 0.99) == 7.0


def test_best_of_keeps_each_groups_latencies_with_its_throughput():
    first = {"batch_events_per_s": 10, "batch_p99_ms": 1, "single_requests_per_s": 5.0, "single_p99_ms": 9}
    second = {"batch_events_per_s": 8, "batch_p99_ms": 2, "single_requests_per_s": 6.0, "single_p99_ms": 3}
    assert best_of(first, second) == {
        "batch_events_per_s": 10.0,
        "batch_p99_ms": 1.0,
        "single_requests_per_s": 6.0,
        "single_p99_ms": 3.0,
    }


def test_open_loop_refuses_a_rate_of_zero():
    with pytest.raises(ValueError):
        open_loop("http://127.0.0.1:1/", b"{}", rate=0)


def test_broker_gc_pauses_one_per_collection_even_when_jstat_shows_the_time_a_sample_late():
    # (t, collections so far, seconds paused so far), as jstat -gc prints them every 100 ms
    samples = [(0.0, 4, 1.0), (0.1, 5, 1.0), (0.2, 5, 1.06), (0.3, 5, 1.06), (0.4, 7, 1.10), (0.5, 7, 1.10)]
    found = pauses(samples)
    assert [t for t, _ in found] == [0.1, 0.4, 0.4]
    assert [round(ms, 6) for _, ms in found] == [60.0, 20.0, 20.0]
    assert pauses([(0.0, 4, 1.0), (0.1, 4, 1.0)]) == []


def test_slow_requests_in_flight_during_a_broker_pause_are_told_apart():
    # a 60 ms pause first seen at t=10.0 lies within 9.84..10.0; requests as (due, latency, ok)
    requests = [
        (9.80, 0.250, True),  # slow, in flight through the pause
        (9.95, 0.120, True),  # slow, due during it
        (11.00, 0.300, True),  # slow, long after: something else
        (9.90, 0.005, True),  # fast
    ]
    assert slow_in_pauses(requests, [(10.0, 60.0)]) == (3, 2)
    assert slow_in_pauses(requests, []) == (3, 0)
