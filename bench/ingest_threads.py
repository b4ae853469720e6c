"""Who in the collector waited, and for what, while the open loop ran (issue 16).

The kernel counts, per thread, the times it blocked of its own accord (``voluntary``: an
epoll wait, a GIL wait, a condition variable) and the times it was taken off a core while it
could still run (``nonvoluntary``: preempted, waiting for a core). Read before and after a
load, per request, they tell apart two causes of the open-loop tail that end-to-end
latencies cannot:

* the delivery-report poll thread (confluent.py) waiting for the GIL once per delivered
  message while the event loop runs Python (a "GIL ping-pong": about 100 waits per
  100-event request if it happened) against a few waits per request (reports served in
  bursts while the loop sleeps in epoll);
* the event loop's thread preempted by other processes on the shared cores.

Threads are grouped by role: ``main`` (the event loop: its id is the process id),
``librdkafka`` (its native threads name themselves ``rdk:…``) and ``other`` (the poll
thread and idle pool threads: Python threads keep the process's name).
"""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
ROLES = ("main", "librdkafka", "other")


def role_of(pid: int, tid: int, name: str) -> str:
    if tid == pid:
        return "main"
    return "librdkafka" if name.startswith("rdk:") else "other"


def parse_task(status: str, stat: str) -> tuple[int, int, float]:
    """(voluntary switches, nonvoluntary switches, CPU seconds) of one thread from its
    ``/proc/<pid>/task/<tid>/status`` and ``stat`` texts."""
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    after_name = stat.rsplit(")", 1)[1].split()  # the name may hold spaces and parentheses
    cpu_s = (int(after_name[11]) + int(after_name[12])) / TICKS
    return int(fields["voluntary_ctxt_switches"]), int(fields["nonvoluntary_ctxt_switches"]), cpu_s


def counters(pid: int) -> dict[str, tuple[int, int, float]]:
    """Per role, the sums over its threads so far (a thread that ended is not counted)."""
    sums = {role: (0, 0, 0.0) for role in ROLES}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            found = parse_task((task / "status").read_text(), (task / "stat").read_text())
        except (OSError, KeyError, IndexError, ValueError):
            continue  # the thread ended while we read it
        role = role_of(pid, int(task.name), name)
        sums[role] = tuple(a + b for a, b in zip(sums[role], found, strict=True))  # type: ignore[assignment]
    return sums


def per_request(
    before: dict[str, tuple[int, int, float]], after: dict[str, tuple[int, int, float]], requests: int
) -> dict[str, float]:
    """The change from ``before`` to ``after``, per request, under results.json's names."""
    n = max(requests, 1)
    out: dict[str, float] = {}
    for role in ROLES:
        (v0, n0, c0), (v1, n1, c1) = before[role], after[role]
        out[f"{role}_waits_per_request"] = (v1 - v0) / n
        out[f"{role}_preemptions_per_request"] = (n1 - n0) / n
        out[f"{role}_cpu_us_per_request"] = (c1 - c0) / n * 1e6
    return out
