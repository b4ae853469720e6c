"""The ingest bench's per-thread scheduling counters: parsed from the kernel's own texts,
grouped by role, and read from a live process (this one)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from bench.ingest_threads import TICKS, counters, parse_task, per_request, role_of

STATUS = """Name:\trdk:broker1
State:\tS (sleeping)
Tgid:\t100
voluntary_ctxt_switches:\t4170
nonvoluntary_ctxt_switches:\t12
"""
# a name with a space and a parenthesis: the fields count from the last ')'
STAT = "101 (odd) name) S 1 100 100 0 -1 4194368 1 0 0 0 250 50 0 0 20 0 9 0 5 0 0"


def test_a_threads_switches_and_cpu_come_from_status_and_stat():
    assert parse_task(STATUS, STAT) == (4170, 12, 300 / TICKS)


def test_roles_main_is_the_process_librdkafka_names_its_threads():
    assert role_of(100, 100, "eventpipe") == "main"
    assert role_of(100, 101, "rdk:broker1") == "librdkafka"
    assert role_of(100, 102, "eventpipe") == "other"  # a Python thread keeps the process's name


def test_per_request_divides_each_change_by_the_requests():
    before = {"main": (10, 5, 1.0), "librdkafka": (0, 0, 0.0), "other": (100, 0, 0.5)}
    after = {"main": (30, 45, 1.5), "librdkafka": (8, 2, 0.1), "other": (500, 4, 0.7)}
    got = per_request(before, after, 200)
    assert got["main_waits_per_request"] == 0.1
    assert got["main_preemptions_per_request"] == 0.2
    assert round(got["main_cpu_us_per_request"], 6) == 2500.0
    assert got["other_waits_per_request"] == 2.0
    assert got["librdkafka_preemptions_per_request"] == 0.01


def test_a_live_process_a_waiting_thread_counts_as_other_and_the_main_threads_cpu_moves():
    before = counters(os.getpid())
    napped, release = threading.Event(), threading.Event()

    def nap() -> None:
        for _ in range(20):
            release.wait(0.002)  # each wait blocks: one voluntary switch at least
        napped.set()
        release.wait(30)  # alive while it is counted: an ended thread is not

    sleeper = threading.Thread(target=nap)
    sleeper.start()
    try:
        assert napped.wait(30)
        during = counters(os.getpid())
        # the sleeper's own counters: the role sums also move as other tests' threads end
        task = Path(f"/proc/{os.getpid()}/task/{sleeper.native_id}")
        own = parse_task((task / "status").read_text(), (task / "stat").read_text())
        name = (task / "comm").read_text().strip()
    finally:
        release.set()
        sleeper.join()
    assert set(during) == {"main", "librdkafka", "other"}
    assert role_of(os.getpid(), sleeper.native_id, name) == "other"
    assert own[0] >= 20  # each wait blocked
    assert during["other"][0] >= own[0]  # and the role's sum holds them
    deadline = time.monotonic() + 5
    while counters(os.getpid())["main"][2] <= before["main"][2] and time.monotonic() < deadline:
        sum(range(10_000))  # work until the main thread's CPU clock (in ticks) moves
    assert counters(os.getpid())["main"][2] > before["main"][2]
