"""Where the nightly job's CPU goes: ``python -m bench.reprocess_profile [raw lines]``.

Generates the benchmark's raw objects (``bench.reprocess.generate``, default 200,000 lines
over three received days), then runs what each task of the job runs -- the ``Packer``, then
every step's reducer (local runs have no mapper: ``--packed-inputs``) with the job's own
protocols, reading and writing bytes lines as mrjob's tasks do -- in this one process, and
prints the CPU per raw line of each part (the
sorts between steps are left out: GNU ``sort`` does them, in C). Then cProfile of the whole
pass, by own time. A profile, not a benchmark: the figures are for shares, not for targets.
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import groupby
from pathlib import Path
from typing import Any

from bench.reprocess import DAY, generate
from eventpipe.loader.reprocess.inputs import Inputs, Packer
from eventpipe.loader.reprocess.job import ReprocessJob

Step = Callable[[Iterable[bytes]], Iterator[bytes]]


def _grouped(lines: list[bytes], read: Callable[[bytes], tuple[Any, Any]]) -> Iterator[tuple[Any, Any]]:
    """A reducer's input (sorted already), decoded and grouped by key."""
    pairs = (read(line) for line in lines)
    for _, group in groupby(pairs, key=lambda kv: kv[0]):
        first = next(group)
        yield first[0], (v for _, v in [first, *group])


def steps_of(job: ReprocessJob) -> list[tuple[str, Callable[[list[bytes]], list[bytes]]]]:
    """Each task as a function from its input lines to its output lines."""

    def mapper(lines: list[bytes]) -> list[bytes]:
        read, write = job.pick_protocols(0, "mapper")
        return [write(k, v) for line in lines for k, v in job.map_by_message(*read(line))]

    def reducer(
        step: int, func: Callable[..., Iterable[tuple[Any, Any]]]
    ) -> Callable[[list[bytes]], list[bytes]]:
        def run(lines: list[bytes]) -> list[bytes]:
            read, write = job.pick_protocols(step, "reducer")
            out = [write(k, v) for key, values in _grouped(lines, read) for k, v in func(key, values)]
            if step == 3:
                out.extend(write(k, v) for k, v in job.partial_rows())
            return out

        return run

    job.start_rows()
    first_mapper = [] if job.options.packed_inputs else [("step 1 mapper (packed lines pass)", mapper)]
    return [
        *first_mapper,
        ("step 1 reducer (copies)", reducer(0, job.reduce_copies)),
        ("step 2 reducer (first hop)", reducer(1, job.reduce_first_hop)),
        ("step 3 reducer (second hop)", reducer(2, job.reduce_second_hop)),
        ("step 4 reducer (per person)", reducer(3, job.reduce_user)),
    ]


def profile(n: int) -> list[tuple[str, int, float]]:
    """``(part, lines in, CPU-µs per raw line)`` for every part of the job."""
    parts = []
    with tempfile.TemporaryDirectory(prefix="ep-profile-reprocess-") as tmp:
        workdir = Path(tmp)
        paths = generate(workdir, n)
        started = time.process_time()
        inputs = Inputs()
        packer = Packer(workdir, inputs, DAY)
        for path in paths:
            packer.add(path.name, path.read_bytes())
        packer.close()
        parts.append(("Packer (gunzip, check, pack)", n, (time.process_time() - started) / n * 1e6))
        lines = [line for p in inputs.paths for line in Path(p).read_bytes().splitlines()]
        job = ReprocessJob(["--day", DAY.isoformat(), "--checked-inputs", "--packed-inputs"])
        for name, run in steps_of(job):  # as local runs: no first mapper (runjob.job_args)
            if not name.startswith("step 1 mapper"):  # the shuffle's sort: GNU sort's, not timed
                lines.sort(key=lambda line: line.split(b"\t", 1)[0])
            count, started = len(lines), time.process_time()
            lines = run(lines)
            parts.append((name, count, (time.process_time() - started) / n * 1e6))
    return parts


def main(argv: list[str]) -> int:
    n = int(argv[0]) if argv else 200_000
    parts = profile(n)
    for name, count, us in parts:
        print(f"{name:36} {count:>9,} lines in  {us:6.1f} CPU-µs per raw line")
    print(f"{'total':36} {'':19} {sum(us for *_, us in parts):6.1f}")
    profiler = cProfile.Profile()
    profiler.runcall(profile, n)
    pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
