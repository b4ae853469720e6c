"""The ingest bench's broker-GC counters, read from the real broker's performance-data file,
agree with jstat's reading of the same JVM (the oracle: HotSpot's own tool)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from bench.jvmgc import BrokerGc, PerfData, perf_data_path, pid_listening


def jstat_stop_the_world(pid: int) -> tuple[int, float]:
    header, row = subprocess.run(
        ["jstat", "-gc", str(pid)], capture_output=True, text=True, check=True, timeout=60
    ).stdout.splitlines()[:2]
    got = dict(zip(header.split(), row.split(), strict=False))
    return int(got["YGC"]) + int(got["FGC"]), float(got["YGCT"]) + float(got["FGCT"])


def test_the_brokers_collections_read_from_its_file_match_jstat(settings):
    if shutil.which("jstat") is None:
        pytest.skip("no jstat to compare with")
    pid = pid_listening(int(settings.kafka_bootstrap.split(",")[0].rsplit(":", 1)[1]))
    assert pid is not None, "the stack's broker is not listening"
    reader = PerfData(perf_data_path(pid))
    try:
        for _ in range(3):  # a collection may land between two readings: bracket ours by jstat's
            count_before, paused_before = jstat_stop_the_world(pid)
            count, paused = reader.read()
            count_after, paused_after = jstat_stop_the_world(pid)
            if count_before == count_after:
                break
    finally:
        reader.close()
    assert count_before <= count <= count_after
    assert round(paused_before, 3) - 0.001 <= paused <= round(paused_after, 3) + 0.001  # jstat: 3 decimals
    with BrokerGc(pid) as sampled:
        pass
    assert sampled.source == "hsperfdata" and sampled.samples  # one sample at least, from the file
