"""The nightly job as production runs it (``runjob.run_job`` with the settings' default
runner), in a process of its own so the benchmark can measure its memory alone:
``python -m bench.reprocess_job DAY WORKDIR OUTPUT INPUT...`` writes to OUTPUT as JSON the
corrections (``rows``), the runner and the largest single process's max RSS (getrusage).
"""

from __future__ import annotations

import resource
import sys
from datetime import date
from pathlib import Path

import orjson

from eventpipe.loader.reprocess.runjob import job_args, run_job
from eventpipe.settings import Settings


def main(argv: list[str]) -> int:
    day, workdir, output, *inputs = argv
    settings = Settings()
    args = job_args(settings, date.fromisoformat(day), settings.reprocess_runner, Path(workdir))
    found = run_job(args, inputs)
    usage = (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    largest = max(u.ru_maxrss for u in usage)
    measured = {"rows": found, "runner": settings.reprocess_runner, "largest_process_kb": largest}
    Path(output).write_bytes(orjson.dumps(measured))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
