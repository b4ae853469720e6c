"""The ingest bench's pure parts: nearest-rank percentiles and the best-of-two rounds."""

from __future__ import annotations

import pytest

from bench.ingest import best_of
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
