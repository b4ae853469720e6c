"""Checking and packing raw objects on every core (``inputs.Packer`` in worker processes).

The ``Packer`` gunzips each object, checks every line as the loader does and packs it: about
17 CPU-µs per raw line, as much as the whole one-process pass, and before this module it ran
in the runner's one process while the other core idled (the job's tasks start only once every
input is packed). Here the caller still fetches the objects (I/O, in order, with its progress
bar) and hands each body to a pool of ``workers`` processes; each worker keeps one ``Packer``
writing its own files (``raw-w<pid>-N.jsonl``), flushed after every object so that a finished
object's lines are on disk when its result comes back. The results are merged in the order
the objects were given: ``corrupt`` lists the same objects in the same order as one ``Packer``
would. Which file holds which line differs from run to run; the job's rows do not (its first
shuffle sorts every line by ``messageId``).

Workers are forked, as mrjob's local runner forks its pool in the same process right after
(``spawn`` would re-run an unguarded ``__main__`` and re-import everything); a worker only
packs bytes it is handed, it touches none of the parent's clients. At most ``2 x workers``
bodies are in flight, so memory stays bounded by a few objects, not the day.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import date
from pathlib import Path
from typing import NamedTuple

from eventpipe.loader.reprocess.inputs import Inputs, Packer, SkippedObject

_packer: Packer | None = None  # this worker process's own (one per process, never shared)


class Packed(NamedTuple):
    """What packing one object added: counted objects and lines, its refusal, the worker's
    files so far."""

    objects: int
    lines: int
    corrupt: list[SkippedObject]
    paths: list[str]


def _start_worker(workdir: str, day: date) -> None:
    global _packer
    _packer = Packer(Path(workdir), Inputs(), day, name=f"raw-w{os.getpid()}")


def _pack_one(key: str, body: bytes) -> Packed:
    assert _packer is not None  # set by the pool's initializer
    out = _packer.out
    objects, lines, corrupt = out.objects, out.lines, len(out.corrupt)
    _packer.add(key, body)
    _packer.flush()
    return Packed(out.objects - objects, out.lines - lines, out.corrupt[corrupt:], list(out.paths))


class ParallelPacker:
    """``Packer``'s interface (``add``, ``close``) over ``workers`` processes; with one
    worker it is a plain ``Packer`` in this process (no pool to start)."""

    def __init__(self, workdir: Path, out: Inputs, day: date, workers: int) -> None:
        self.out, self.workers = out, workers
        self.local = Packer(workdir, out, day) if workers <= 1 else None
        self.pool: ProcessPoolExecutor | None = None
        if self.local is None:
            context = multiprocessing.get_context("fork")
            self.pool = ProcessPoolExecutor(workers, context, _start_worker, (str(workdir), day))
        self.pending: deque[Future[Packed]] = deque()

    def add(self, key: str, body: bytes) -> None:
        if self.local is not None:
            self.local.add(key, body)
            return
        assert self.pool is not None
        while len(self.pending) >= 2 * self.workers:
            self._merge(self.pending.popleft().result())
        self.pending.append(self.pool.submit(_pack_one, key, body))

    def close(self) -> None:
        """Wait for every object, merge in order, stop the workers (their files close)."""
        if self.local is not None:
            self.local.close()
            return
        assert self.pool is not None
        try:
            while self.pending:
                self._merge(self.pending.popleft().result())
        finally:
            for future in self.pending:
                future.cancel()
            self.pool.shutdown(wait=True)

    def _merge(self, packed: Packed) -> None:
        self.out.objects += packed.objects
        self.out.lines += packed.lines
        self.out.corrupt.extend(packed.corrupt)
        self.out.paths.extend(p for p in packed.paths if p not in self.out.paths)
