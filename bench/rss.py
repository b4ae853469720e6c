"""Peak resident memory of a process and all its descendants, sampled from /proc (Linux).

``getrusage(RUSAGE_CHILDREN).ru_maxrss`` gives the largest single descendant only; tasks
that run side by side (map tasks, GNU sort) add up, so the tree is summed at each sample.
A sample every ``interval_s`` can miss a peak shorter than that: the figure is a lower
bound of the true peak, close to it for processes that live seconds (ours do).
"""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

PAGE_KB = os.sysconf("SC_PAGESIZE") // 1024  # /proc/<pid>/statm counts pages


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text()
            found.extend(int(c) for c in text.split())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass  # the process ended between two reads
    return found


def _rss_kb(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0


def tree_rss_kb(root: int) -> int:
    total, todo, seen = 0, [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += _rss_kb(pid)
        todo.extend(_children(pid))
    return total


def run_measured(args: list[str], interval_s: float = 0.1, **popen: object) -> tuple[int, int]:
    """Run ``args`` to completion; (exit code, peak RSS of its process tree in KiB)."""
    proc = subprocess.Popen(args, **popen)  # type: ignore[call-overload]
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(interval_s):
            peak = max(peak, tree_rss_kb(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        code = proc.wait()
    finally:
        done.set()
        sampler.join()
    return code, peak
