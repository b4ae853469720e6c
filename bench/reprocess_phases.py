"""Wall and CPU time per phase of the nightly job on ``-r local``:
``python -m bench.reprocess_phases [raw lines]`` (default 500,000).

Generates the benchmark's raw objects (``bench.reprocess.generate``), packs them as
``run_day`` does (``bench.reprocess.pack``), then runs the job with the runner's phases
timed -- per step: the map tasks (symlinks when a step has no mapper), GNU sort, the reduce
splits, the reduce tasks. CPU is this process's plus its waited-for descendants' (the
tasks, GNU sort, the packing workers). A profile, not a benchmark: on a shared machine the
wall times are the machine's; the CPU shares are the job's.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.reprocess import DAY, generate, pack
from eventpipe.loader.reprocess.local_runner import ByteSplitLocalRunner
from eventpipe.loader.reprocess.runjob import job_args, run_job
from eventpipe.settings import Settings

PHASES = ("_run_mappers_and_combiners", "_sort_reducer_input", "_split_reducer_input", "_run_reducers")


def cpu_s() -> float:
    mine, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + children.ru_utime + children.ru_stime


def timed(log: list[tuple[str, float, float]], name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    def run(runner: Any, step_num: int, *args: Any, **kwargs: Any) -> Any:
        wall, cpu = time.perf_counter(), cpu_s()
        try:
            return method(runner, step_num, *args, **kwargs)
        finally:
            log.append((f"step {step_num + 1} {name.strip('_')}", time.perf_counter() - wall, cpu_s() - cpu))

    return run


def phases(n: int) -> list[tuple[str, float, float]]:
    """``(phase, wall s, CPU s)`` in the order they ran."""
    log: list[tuple[str, float, float]] = []
    originals = {m: getattr(ByteSplitLocalRunner, m) for m in PHASES}
    with tempfile.TemporaryDirectory(prefix="ep-bench-phases-") as tmp:
        workdir = Path(tmp)
        paths = generate(workdir, n)
        wall, cpu = time.perf_counter(), cpu_s()
        inputs = pack(paths, workdir)
        log.append(("pack (check + pack, every core)", time.perf_counter() - wall, cpu_s() - cpu))
        for name, method in originals.items():  # the runner class -r local uses (job.py)
            setattr(ByteSplitLocalRunner, name, timed(log, name, method))
        try:
            wall, cpu = time.perf_counter(), cpu_s()
            run_job(job_args(Settings(), DAY, "local", workdir), inputs)
            log.append(("the job (all steps)", time.perf_counter() - wall, cpu_s() - cpu))
        finally:
            for name, method in originals.items():
                setattr(ByteSplitLocalRunner, name, method)
    return log


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 500_000
    for name, wall, cpu in phases(n):
        print(f"{name:40} wall {wall:7.2f} s  CPU {cpu:7.2f} s  ({cpu / n * 1e6:5.1f} CPU-µs per raw line)")
    print(f"load average {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
