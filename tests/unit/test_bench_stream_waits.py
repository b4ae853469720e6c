"""bench.stream_waits' table (pure): the steps of a worker's timeline, cuts written inline
subtracted from the fold, commits inside the fence told apart, shares of the run."""

from __future__ import annotations

from bench.stream_waits import table


def test_the_timeline_becomes_steps_per_cut_and_shares_of_the_run() -> None:
    # (label, wall start, wall end, cpu start, cpu end): one fetch folded with a count cut
    # written inside it, an empty fetch, then a time cut; 10 s of run
    spans = [
        ("getmany fetched", -1.0, 0.0, 0.0, 0.5),  # before the run: not counted
        ("committed", 1.0, 1.5, 1.0, 1.1),
        ("commit", 1.5, 2.0, 1.1, 1.2),
        ("fence", 1.0, 2.0, 1.0, 1.2),
        ("write count", 1.0, 3.0, 1.0, 1.4),
        ("consume", 0.0, 5.0, 0.0, 2.4),
        ("getmany empty", 5.0, 8.0, 4.0, 4.0),
        ("commit", 9.0, 9.5, 4.2, 4.3),
        ("write time", 8.0, 10.0, 4.0, 4.5),
    ]
    out = table([list(s) for s in spans])
    assert out["run_s"] == 10 and out["cuts"] == 2
    steps = out["steps"]
    assert steps["consume"]["wall_ms"] == 3000  # 5 s less the 2 s cut written inside it
    assert steps["consume"]["loop_cpu_ms"] == 2000 and steps["consume"]["waiting_ms"] == 1000
    assert steps["getmany empty"] == {
        "calls": 1,
        "wall_ms": 3000,
        "loop_cpu_ms": 0,
        "waiting_ms": 3000,
        "ms_per_cut": 1500,
        "share_of_run": 0.3,
    }
    assert steps["committed (fence)"]["calls"] == 1 and steps["commit (fence)"]["wall_ms"] == 500
    assert steps["commit"]["calls"] == 1  # the cut's own commit, outside the fence
    assert "getmany fetched" not in steps
    assert out["loop_outside_steps_s"] == 0  # consume 3 + cuts 4 + empty fetch 3 = the run


def test_concurrent_aggregate_puts_count_once_per_cut_together() -> None:
    # a cut whose three aggregate PUTs overlap: 3 x 1 s of spans, 1.5 s of the cut's time
    spans = [
        ("consume", 0.0, 1.0, 0.0, 0.5),
        ("put raw", 1.0, 2.0, 0.5, 0.5),
        ("put agg", 2.0, 3.0, 0.5, 0.5),
        ("put agg", 2.2, 3.2, 0.5, 0.5),
        ("put agg", 2.5, 3.5, 0.5, 0.6),
        ("write time", 1.0, 4.0, 0.5, 0.7),
    ]
    steps = table([list(s) for s in spans])["steps"]
    assert steps["put agg"]["calls"] == 3 and steps["put agg"]["wall_ms"] == 3000
    assert steps["put agg together"]["calls"] == 1 and steps["put agg together"]["wall_ms"] == 1500
    assert steps["put agg together"]["ms_per_cut"] == 1500


def test_a_round_counts_its_cuts() -> None:
    # a round of three cuts ("write round/3") and a lone count cut: four cuts in the run
    spans = [
        ("consume", 0.0, 1.0, 0.0, 0.5),
        ("write count", 0.5, 0.8, 0.1, 0.2),
        ("put agg", 1.2, 1.5, 0.6, 0.6),
        ("put agg", 1.3, 1.9, 0.6, 0.6),
        ("write round/3", 1.0, 2.0, 0.5, 0.7),
    ]
    out = table([list(s) for s in spans])
    assert out["cuts"] == 4
    assert out["steps"]["write round/3"]["calls"] == 1 and out["steps"]["write round/3"]["ms_per_cut"] == 250
    assert out["steps"]["put agg together"]["wall_ms"] == 700  # the round's PUTs, first start to last end
