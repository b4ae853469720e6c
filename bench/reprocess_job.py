"""The nightly job as production runs it (``runjob.run_job`` with the settings' default
runner), in a process of its own so the benchmark can measure its memory alone:
``python -m bench.reprocess_job DAY WORKDIR OUTPUT INPUT...`` writes to OUTPUT as JSON the
corrections (``rows``), the runner, and the max RSS of the runner process itself (``VmHWM``:
``getrusage(RUSAGE_SELF)`` would report the forking benchmark's size, which Linux carries
across exec) and of the largest of its descendants (tasks, GNU sort, the pool's workers).
Raw ``.gz`` objects among the inputs are checked and packed first, here, as ``run_day`` does
(``bench.reprocess.pack``: its worker processes count in the measured tree too).
"""

from __future__ import annotations

import resource
import sys
from datetime import date
from pathlib import Path

import orjson

from eventpipe.loader.reprocess.runjob import job_args, run_job
from eventpipe.settings import Settings


def _high_water_kb() -> int:
    """This process's peak RSS since its exec (``/proc/self/status`` ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def main(argv: list[str]) -> int:
    day, workdir, output, *inputs = argv
    objects = [Path(p) for p in inputs if p.endswith(".gz")]
    if objects:
        from bench.reprocess import pack  # the same packing as the stage times

        inputs = pack(objects, Path(workdir)) + [p for p in inputs if not p.endswith(".gz")]
    settings = Settings()
    args = job_args(settings, date.fromisoformat(day), settings.reprocess_runner, Path(workdir))
    found = run_job(args, inputs)
    measured = {
        "rows": found,
        "runner": settings.reprocess_runner,
        "runner_process_kb": _high_water_kb(),
        "largest_task_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    }
    Path(output).write_bytes(orjson.dumps(measured))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
