"""Where the stream worker's WALL time goes, cut by cut: ``python -m bench.stream_waits [events]
[defaults]`` (default ``bench.stream.EVENTS``, 3M; ``defaults``: the product's cut settings,
as ``bench.stream``'s headline, instead of ``bench.stream.SMALL_CUTS``).

``bench.stream``'s worker run (same topic shape, cuts of 10k, 1 s flush bound, clock from the
first folded event until every offset is committed), with the worker process started through
this module (``worker``): before the real ``eventpipe.stream.worker`` main runs, the awaited
steps of the loop and of ``CutWriter.write`` are wrapped so each call records its wall time
and the event-loop thread's CPU time (``time.thread_time``) -- wall minus CPU is time the loop
spent waiting there (on Kafka, S3, a gzip thread). Bench code only: nothing in
``services/stream`` knows about it. The wrappers cost a few µs per call (~200 calls per cut),
nothing per event.

Steps (nested ones are also inside their parent): ``getmany`` (the record source's fetch since
session 13, the group consumer's poll inside it as ``group poll``; ``fetched`` when it returned
records, ``empty`` when not: the end-of-run wait on the flush bound is there), ``consume``
(check + fold of a fetch, cuts written inline subtracted), ``write`` per cut and inside it
``objects`` (the last fold, aggregate rows + gzip), ``fence`` (+ raw gzip in a thread; since
the rounds the fence's checks alone, ``prepare`` each cut's raw gzip + changelog records in
threads, ``fence round`` both and, since session 11, the cuts' writes that follow them),
``unwritten`` (HEAD), ``put raw``, ``put agg`` (each of a cut's aggregate PUTs, which run
concurrently with each other and with the ``changelog``: their sum is not time the cut spent)
and ``put agg together`` (per cut, the first one's start to the last one's end; its loop
CPU is left at 0), ``commit``, ``notify``; ``write other`` is what the write spends outside those.
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

OUT_ENV = "EVENTPIPE_BENCH_WAITS_OUT"


def _record(spans: list[tuple[str, float, float, float, float]], label: str, fn: Any) -> Any:
    @functools.wraps(fn)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        if str(getattr(args[0], "_group_id", "")).endswith("-deadletters"):
            return await fn(*args, **kwargs)  # the dead-letter archiver's consumer: not the stream's
        t0, c0 = time.monotonic(), time.thread_time()
        try:
            result = await fn(*args, **kwargs)
        finally:
            spans.append((label, t0, time.monotonic(), c0, time.thread_time()))
        if label == "getmany" and result:
            spans[-1] = ("getmany fetched", *spans[-1][1:])
        elif label == "getmany":
            spans[-1] = ("getmany empty", *spans[-1][1:])
        return result

    return timed


def _sync_record(spans: list, label: str, fn: Any) -> Any:
    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        t0, c0 = time.monotonic(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            spans.append((label, t0, time.monotonic(), c0, time.thread_time()))

    return timed


def instrumented_worker() -> int:
    """The real worker main with its awaited steps wrapped (module docstring); the spans are
    appended to ``$EVENTPIPE_BENCH_WAITS_OUT`` after every cut, one JSON array per line, only
    those not written yet (the bench terminates the worker; a 1M run makes ~100 cuts)."""
    from aiokafka import AIOKafkaConsumer

    from eventpipe.stream import batch, pipeline, source, storage, writer
    from eventpipe.stream.changelog import StateChangelog
    from eventpipe.stream.worker import main

    spans: list[tuple[str, float, float, float, float]] = []
    out = Path(os.environ[OUT_ENV])
    # the loop's fetch is the record source's (session 13); the group consumer's own poll
    # inside it is nested ("group poll"), as with the aiokafka source
    AIOKafkaConsumer.getmany = _record(spans, "group poll", AIOKafkaConsumer.getmany)
    for records in (source.LibrdkafkaRecords, source.GroupRecords):
        records.fetch = _record(spans, "getmany", records.fetch)  # type: ignore[method-assign]
    AIOKafkaConsumer.commit = _record(spans, "commit", AIOKafkaConsumer.commit)
    AIOKafkaConsumer.committed = _record(spans, "committed", AIOKafkaConsumer.committed)
    pipeline.Pipeline._consume = _record(spans, "consume", pipeline.Pipeline._consume)
    W = writer.CutWriter
    for name in ("fence_and_gzip", "fence_and_prepare"):  # the waiting pass, before the rounds
        if hasattr(W, name):
            setattr(W, name, _record(spans, "fence", getattr(W, name)))
    if hasattr(W, "fence_round"):  # the rounds: the fence's checks, each cut's preparation apart
        W.fence_round = _record(spans, "fence round", W.fence_round)
        W.fence = _record(spans, "fence", W.fence)
        if asyncio.iscoroutinefunction(W.prepare):  # since session 15 it starts threads and returns
            W.prepare = _record(spans, "prepare", W.prepare)
    if hasattr(W, "put_objects"):
        W.put_objects = _record(spans, "HEAD + PUTs", W.put_objects)
    W.unwritten = _record(spans, "unwritten", W.unwritten)
    for name in ("notify", "announce"):  # before / after: notices awaited inline / queued
        if hasattr(W, name):
            setattr(W, name, _record(spans, "notify", getattr(W, name)))
    real_put = storage.S3Writer.put

    async def put(self: Any, obj: Any, exclusive: bool = False) -> None:
        label = "put raw" if obj.table == "events" else "put agg"
        await _record(spans, label, real_put)(self, obj, exclusive)

    storage.S3Writer.put = put
    StateChangelog.flush = _record(spans, "changelog", StateChangelog.flush)
    batch.PartitionBatch.objects = _sync_record(spans, "objects", batch.PartitionBatch.objects)
    written = 0

    def flushed() -> None:
        nonlocal written
        with out.open("ab") as f:
            f.write(b"".join(orjson.dumps(span) + b"\n" for span in spans[written:]))
        written = len(spans)

    if hasattr(W, "write_round"):  # since the rounds: write() is a round of one
        real_round = _record(spans, "write", W.write_round)

        async def write_round(self: Any, cuts: list[tuple[Any, str]]) -> list[bool]:
            n = sum(1 for part, _ in cuts if part.batch.policy.is_open)
            done = await real_round(self, cuts)
            label = f"write {cuts[0][1]}" if len(cuts) == 1 else f"write round/{n}"
            spans[-1] = (label, *spans[-1][1:])
            flushed()
            return done

        W.write_round = write_round
    else:
        real_write = _record(spans, "write", W.write)

        async def write(self: Any, part: Any, reason: str) -> bool:
            done = await real_write(self, part, reason)
            spans[-1] = (f"write {reason}", *spans[-1][1:])
            flushed()
            return done

        W.write = write
    return main()


def table(spans: list[list[Any]], committed_at: float | None = None) -> dict[str, Any]:
    """Per step: calls, wall ms, loop-thread CPU ms, waiting ms (wall - CPU), share of the run.
    The run: from the first ``consume`` to the end of the last cut's write."""
    first = min(s[1] for s in spans if s[0] == "consume")
    last = max(s[2] for s in spans if s[0].startswith("write"))
    run = last - first
    inside = [s for s in spans if s[1] >= first and s[2] <= last + 1e-6]
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    # a round of n cuts is one span labelled "write round/n"
    cuts = sum(int(s[0].rpartition("/")[2]) if "/" in s[0] else 1 for s in inside if s[0].startswith("write"))

    def add(label: str, wall: float, cpu: float) -> None:
        totals[label][0] += 1
        totals[label][1] += wall
        totals[label][2] += cpu

    writes = [s for s in inside if s[0].startswith("write")]
    for label, t0, t1, c0, c1 in inside:
        if label in ("commit", "committed"):
            in_fence = any(f[0] == "fence" and f[1] <= t0 and t1 <= f[2] for f in inside)
            label = f"{label} (fence)" if in_fence else label
        add(label, t1 - t0, c1 - c0)
    # consume without the cuts written inline
    for label, t0, t1, _c0, _c1 in inside:
        if label == "consume":
            for w in writes:
                if t0 <= w[1] and w[2] <= t1:
                    totals["consume"][1] -= w[2] - w[1]
                    totals["consume"][2] -= w[4] - w[3]
    # the aggregate PUTs of a cut run concurrently: their spans summed are not the time the cut
    # spent on them; "put agg together" is that time, from the first one's start to the last's end
    for w in writes:
        puts = [s for s in inside if s[0] == "put agg" and w[1] <= s[1] and s[2] <= w[2]]
        if puts:
            add("put agg together", max(s[2] for s in puts) - min(s[1] for s in puts), 0.0)
    accounted = sum(totals[k][1] for k in totals if k.startswith(("getmany", "consume", "write")))
    rows = {
        label: {
            "calls": int(n),
            "wall_ms": round(wall * 1e3, 1),
            "loop_cpu_ms": round(cpu * 1e3, 1),
            "waiting_ms": round((wall - cpu) * 1e3, 1),
            "ms_per_cut": round(wall * 1e3 / max(cuts, 1), 2),
            "share_of_run": round(wall / run, 3),
        }
        for label, (n, wall, cpu) in sorted(totals.items(), key=lambda kv: -kv[1][1])
    }
    return {
        "run_s": round(run, 3),
        "cuts": cuts,
        "loop_outside_steps_s": round(run - accounted, 3),
        "steps": rows,
    }


def measure(events: int, cuts: dict[str, Any] | None = None) -> dict[str, Any]:
    import tempfile

    import bench.stream as bs

    out = Path(tempfile.mkdtemp(prefix="stream-waits-")) / "spans.json"
    wrapper = out.with_name("python-waits")
    wrapper.write_text(f"#!/bin/sh\nexec {bs.python_exe()} -m bench.stream_waits worker\n")
    wrapper.chmod(0o755)
    os.environ[OUT_ENV] = str(out)
    rate, cpu_us = bs.worker_only(str(wrapper), f"waits-{os.getpid()}", events, cuts=cuts)
    result = table([orjson.loads(line) for line in out.read_bytes().splitlines()])
    return {
        "events_per_s": round(rate),
        "worker_cpu_us_per_event": round(cpu_us, 2),
        "load_average_1m": round(os.getloadavg()[0], 2),
        **result,
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        sys.argv = [sys.argv[0], *sys.argv[2:]]
        raise SystemExit(instrumented_worker())
    import bench.stream as bs

    n = int(sys.argv[1]) if sys.argv[1:] else bs.EVENTS
    defaults = {name: bs.Settings.model_fields[name].default for name in bs.SMALL_CUTS}
    cut_settings = defaults if sys.argv[2:3] == ["defaults"] else None
    print(orjson.dumps(measure(n, cut_settings), option=orjson.OPT_INDENT_2).decode())
