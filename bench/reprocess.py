"""Benchmark of the nightly reprocess: the mrjob job on the default runner (``-r local``,
in a process of its own whose tree's peak RSS is sampled) over generated raw logs of three
received days -- D-1, D, D+1, what production reads for D with one day of lateness --
side by side with a single-process pure-Python pass over the same files (the one-machine
ceiling: same rollup functions, no serialisation or sorting); the job's per-event cost
projected to a 1 B-event EMR day.

``run()`` returns ``{"events_per_s", "ceiling_events_per_s", "peak_rss_mb", ...}`` for
``make bench``. Size: ``EVENTPIPE_BENCH_REPROCESS_EVENTS`` (default 1,000,000 raw lines
over the three days, duplicates included). The Spark engine is compared only with
``EVENTPIPE_BENCH_REPROCESS_SPARK=1`` (its JVM and five Python shuffles take minutes);
``EVENTPIPE_BENCH_REPROCESS_BIG=10000000`` adds the job alone over a 10M-line day (its peak
RSS, ``big_*`` fields; no ceiling: the one-process pass holds every event in memory);
``python -m bench.reprocess big 10000000`` runs only that (the peak-RSS row's measurement,
without the 1M-line job and ceiling first; run it under ``nice -n 19`` on a shared machine).
Data lives in a temporary directory, removed afterwards.
"""

from __future__ import annotations

import gzip
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from bench.common import ROOT, python_exe
from bench.emr_cost import project
from bench.rss import run_measured
from eventpipe.definitions import canonical_first
from eventpipe.identity import Links
from eventpipe.loader.reprocess.inputs import Inputs
from eventpipe.loader.reprocess.packing import ParallelPacker
from eventpipe.loader.reprocess.rows import (
    ASSIGNMENTS,
    DAILY_TABLES,
    matters_for,
    sort_rows,
    to_row,
    user_contributions,
)
from eventpipe.rollup import rollup_user
from eventpipe.settings import Settings
from eventpipe.timeutil import format_ts

DAY = date(2026, 11, 26)
NAMES = ("Product Viewed", "Product Viewed", "Product Added", "Order Completed", "Experiment Viewed")
EXPERIMENTS = {"checkout-button": ("control", "green"), "pricing-page": ("control", "annual", "monthly")}


def generate(workdir: Path, n: int, seed: int = 11) -> list[Path]:
    """About ``n`` raw lines of the received days D-1, D, D+1 as the archive holds them: gzip
    JSONL per partition and received hour; events of those three days, 2% retried duplicates,
    2% late (received up to a day later, never after D+1: what a run with lateness 1 reads)."""
    rng = random.Random(seed)
    users = max(n // 60, 1)  # ~20 events per user and day
    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC) - timedelta(days=1)
    last = start + timedelta(days=3, milliseconds=-1)
    # one gzip stream per object, fed in blocks (a compress call per line costs ~60 µs): a
    # 10M-line day never sits in memory, at most a block per object does
    files: dict[tuple[int, str], gzip.GzipFile] = {}
    pending: dict[tuple[int, str], bytearray] = defaultdict(bytearray)
    i = 0
    while i < n:
        u = rng.randrange(users)
        at = start + timedelta(seconds=rng.uniform(0, 3 * 86_400 - 1))
        late = rng.random() < 0.02
        received = min(at + timedelta(seconds=rng.uniform(0, 86_400) if late else rng.uniform(0.05, 2)), last)
        kind = rng.choices(("track", "page", "screen", "identify"), (60, 25, 10, 5))[0]
        event: dict[str, Any] = {
            "type": kind, "messageId": f"{seed}-{i:012d}", "userId": f"user-{u}" if u % 3 else None,
            "anonymousId": f"anon-{u}", "properties": {}, "traits": None, "integrations": None,
            "context": {"ip": "203.0.113.9", "library": {"name": "analytics.js", "version": "5.2.0"},
                        "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/132.0"},
            "originalTimestamp": format_ts(at), "sentAt": format_ts(at), "receivedAt": format_ts(received),
            "timestamp": format_ts(at), "source": "dev",
        }  # fmt: skip
        if kind == "track":
            event["event"] = rng.choice(NAMES)
            if event["event"] == "Experiment Viewed":
                experiment = rng.choice(list(EXPERIMENTS))
                variants = EXPERIMENTS[experiment]
                event["properties"] = {
                    "experiment_id": experiment,
                    "variation_id": variants[u % len(variants)],
                }
            else:
                event["properties"] = {"price": round(rng.uniform(5, 200), 2), "currency": "EUR"}
        elif kind in ("page", "screen"):
            event["name"] = "Home"
        copies = 2 if rng.random() < 0.02 else 1
        for c in range(copies):
            if c:
                retry = min(received + timedelta(seconds=rng.uniform(1, 600)), last)
                event = {**event, "receivedAt": format_ts(retry)}
            partition, hour = u % 6, event["receivedAt"][:13]
            if (partition, hour) not in files:
                path = workdir / f"raw-{hour}-{partition}.jsonl.gz"
                files[(partition, hour)] = gzip.GzipFile(path, "wb", compresslevel=6, mtime=0)
            block = pending[(partition, hour)]
            block += orjson.dumps(event) + b"\n"
            if len(block) > 256 * 1024:
                files[(partition, hour)].write(block)
                block.clear()
            i += 1
    for where, stream in files.items():
        stream.write(pending[where])
        stream.close()
    return [workdir / f"raw-{hour}-{partition}.jsonl.gz" for partition, hour in sorted(files)]


def ceiling(paths: list[Path], day: date = DAY) -> dict[str, list[dict[str, Any]]]:
    """The same computation in one process: dedup, links, per-person rollup, row sums."""
    kept: dict[str, dict[str, Any]] = {}
    for path in paths:
        for line in gzip.decompress(path.read_bytes()).splitlines():
            event = orjson.loads(line)
            mid = event["messageId"]
            kept[mid] = canonical_first(kept[mid], event) if mid in kept else event
    links = Links.from_events(kept.values())  # the job's snapshot is empty here
    by_user: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in kept.values():
        if matters_for(event, day):
            by_user[links.person(event)].append(event)
    sums: dict[tuple, list] = {}
    for user, events in by_user.items():
        for key, value in user_contributions(user, rollup_user(events, days={day}), {}, day):
            if key[0] == ASSIGNMENTS:
                sums[tuple(key)] = value
            else:
                acc = sums.setdefault(tuple(key), [0, 0])
                acc[0] += value[0]
                acc[1] += value[1]
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for key, value in sums.items():
        out[key[0]].append(to_row(list(key), value))
    return {t: sort_rows(t, out[t]) for t in (*DAILY_TABLES, ASSIGNMENTS)}


def pack(paths: list[Path], workdir: Path) -> list[str]:
    """What ``run_day`` does for local engines once the objects are here: check every line as
    the loader does and pack the lines into plain JSONL (``packing.ParallelPacker`` on the
    settings' task count, the same code as ``inputs.download_inputs``)."""
    inputs = Inputs()
    packer = ParallelPacker(workdir, inputs, DAY, Settings().reprocess_tasks or os.cpu_count() or 1)
    try:
        for path in paths:
            packer.add(path.name, path.read_bytes())
    finally:
        packer.close()
    if inputs.corrupt:
        raise AssertionError(f"generated objects refused: {inputs.corrupt[:3]}")
    snapshot = workdir / "snapshot.jsonl"
    snapshot.write_bytes(b"")
    return [*inputs.paths, str(snapshot)]


def job(inputs: list[str], workdir: Path) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """The job on the default runner in a child process: its rows and its memory."""
    output = workdir / "job-output.json"
    args = [python_exe(), "-m", "bench.reprocess_job", DAY.isoformat(), str(workdir), str(output), *inputs]
    code, peak_kb = run_measured(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if code != 0:
        raise RuntimeError(f"the job failed (exit {code}): python -m bench.reprocess_job ...")
    measured = orjson.loads(output.read_bytes())
    memory = {
        "runner": measured["runner"],
        "peak_rss_mb": round(peak_kb / 1024, 1),  # the whole process tree, summed per sample
        "runner_process_rss_mb": round(measured["runner_process_kb"] / 1024, 1),
        "largest_task_rss_mb": round(measured["largest_task_kb"] / 1024, 1),
    }
    return measured["rows"], memory


def spark(inputs: list[str]) -> tuple[dict[str, list[dict[str, Any]]], float, float]:
    """The Spark engine (local[cores]); its rows, the session's start-up and the job's seconds."""
    from eventpipe.loader.reprocess.engines.spark_job import run_spark, spark_session

    settings = Settings(spark_master=f"local[{os.cpu_count() or 1}]", spark_shuffle_partitions=8)
    started = time.perf_counter()
    session = spark_session(settings)
    startup_s = time.perf_counter() - started
    try:
        started = time.perf_counter()
        found = run_spark(settings, DAY, inputs)
        return found, startup_s, time.perf_counter() - started
    finally:
        session.stop()


def _cpu_s() -> float:
    """User + system seconds of this process and its waited-for descendants so far."""
    mine, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return mine.ru_utime + mine.ru_stime + children.ru_utime + children.ru_stime


def with_spark(inputs: list[str], expected: dict[str, Any], n: int) -> dict[str, Any]:
    by_spark, startup_s, spark_s = spark(inputs)
    if by_spark != expected:
        raise AssertionError("the Spark engine and the single-process pass disagree")
    spark_us = spark_s * (os.cpu_count() or 1) / n * 1e6
    return {
        "spark_events_per_s": round(n / spark_s),
        "spark_s": round(spark_s, 1),
        "spark_startup_s": round(startup_s, 1),
        "spark_core_us_per_event": round(spark_us, 1),
        "spark_emr_1b_events_day": project(spark_us),
    }


def big_day(n: int) -> dict[str, Any]:
    """The job alone over ``n`` generated raw lines: its memory at a size the one-process
    ceiling cannot hold (it keeps every event in a dict). ``EVENTPIPE_BENCH_REPROCESS_BIG``."""
    with tempfile.TemporaryDirectory(prefix="ep-bench-reprocess-big-") as tmp:
        workdir = Path(tmp)
        paths = generate(workdir, n)
        started, cpu = time.perf_counter(), _cpu_s()
        inputs = pack(paths, workdir)
        for path in paths:  # the gzip objects are packed: only the job's own disk remains
            path.unlink()
        found, memory = job(inputs, workdir)
        job_s, job_cpu_s = time.perf_counter() - started, _cpu_s() - cpu
    return {
        "big_events": n,
        "big_peak_rss_mb": memory["peak_rss_mb"],
        "big_largest_task_rss_mb": memory["largest_task_rss_mb"],
        "big_runner_process_rss_mb": memory["runner_process_rss_mb"],
        "big_job_s": round(job_s, 1),
        "big_job_cpu_us_per_event": round(job_cpu_s / n * 1e6, 1),
        "big_load_average": round(os.getloadavg()[0], 2),
        "big_rows": {t: len(r) for t, r in found.items()},
    }


def run(events: int | None = None) -> dict[str, Any]:
    n = events or int(os.environ.get("EVENTPIPE_BENCH_REPROCESS_EVENTS", "1000000"))
    extra: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ep-bench-reprocess-") as tmp:
        workdir = Path(tmp)
        paths = generate(workdir, n)
        started, cpu = time.perf_counter(), _cpu_s()
        found, memory = job([str(p) for p in paths], workdir)  # packs them first, measured
        job_s, job_cpu_s = time.perf_counter() - started, _cpu_s() - cpu
        inputs = [str(p) for p in [*sorted(workdir.glob("raw-*.jsonl")), workdir / "snapshot.jsonl"]]
        started, cpu = time.perf_counter(), _cpu_s()
        expected = ceiling(paths)
        ceiling_s, ceiling_cpu_s = time.perf_counter() - started, _cpu_s() - cpu
        if found != expected:
            raise AssertionError("the job and the single-process pass disagree")
        if os.environ.get("EVENTPIPE_BENCH_REPROCESS_SPARK") == "1":
            extra = with_spark(inputs, expected, n)
    if os.environ.get("EVENTPIPE_BENCH_REPROCESS_BIG"):  # e.g. 10000000: ~30 min here
        extra.update(big_day(int(os.environ["EVENTPIPE_BENCH_REPROCESS_BIG"])))
    cores = os.cpu_count() or 1
    job_us = job_s * cores / n * 1e6
    return {
        "events_per_s": round(n / job_s),
        "ceiling_events_per_s": round(n / ceiling_s),
        "ratio_to_ceiling": round(ceiling_s / job_s, 2),
        **memory,
        "events": n,
        "received_days": 3,
        "job_s": round(job_s, 1),
        "ceiling_s": round(ceiling_s, 1),
        "cores": cores,
        "load_average": round(os.getloadavg()[0], 2),
        "job_core_us_per_event": round(job_us, 1),
        # CPU actually used (this process + every finished descendant): what a shared,
        # loaded machine distorts least; the ratio a quiet 2-core machine would approach
        "job_cpu_us_per_event": round(job_cpu_s / n * 1e6, 1),
        "ceiling_cpu_us_per_event": round(ceiling_cpu_s / n * 1e6, 1),
        "emr_1b_events_day": {"mrjob": project(job_us)},
        "rows": {t: len(r) for t, r in found.items()},
        **extra,
    }


if __name__ == "__main__":
    # ``python -m bench.reprocess big 10000000``: only what the peak-RSS row needs (the job
    # over a big day), not the 1M-line job and ceiling that ``run()`` measures first
    if sys.argv[1:2] == ["big"]:
        print(orjson.dumps(big_day(int(sys.argv[2])), option=orjson.OPT_INDENT_2).decode())
    else:
        print(orjson.dumps(run(), option=orjson.OPT_INDENT_2).decode())
