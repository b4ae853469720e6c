"""Benchmark of the nightly reprocess: the mrjob job with the local runner and the Spark
engine in local mode over one generated day of raw logs, side by side with a single-process
pure-Python pass over the same files (the one-machine ceiling: same rollup functions, no
serialisation or sorting); each engine's per-event cost projected to a 1 B-event EMR day.

``run()`` returns ``{"events_per_s", "ceiling_events_per_s", ...}`` for ``make bench``.
Size: ``EVENTPIPE_BENCH_REPROCESS_EVENTS`` (default 1,000,000 raw lines, duplicates
included). Data lives in a temporary directory, removed afterwards.
"""

from __future__ import annotations

import gzip
import os
import random
import tempfile
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from bench.emr_cost import project
from eventpipe.definitions import canonical_first
from eventpipe.identity import Links
from eventpipe.loader.reprocess.rows import (
    ASSIGNMENTS,
    DAILY_TABLES,
    matters_for,
    sort_rows,
    to_row,
    user_contributions,
)
from eventpipe.loader.reprocess.runjob import job_args, run_job
from eventpipe.rollup import rollup_user
from eventpipe.settings import Settings
from eventpipe.timeutil import format_ts

DAY = date(2026, 11, 26)
NAMES = ("Product Viewed", "Product Viewed", "Product Added", "Order Completed", "Experiment Viewed")
EXPERIMENTS = {"checkout-button": ("control", "green"), "pricing-page": ("control", "annual", "monthly")}


def generate(workdir: Path, n: int, seed: int = 11) -> list[Path]:
    """About ``n`` raw lines for DAY as the archive holds them: gzip JSONL per partition
    and received hour; 2% retried duplicates, 2% late (received the next day), skewed clocks."""
    rng = random.Random(seed)
    users = max(n // 20, 1)
    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    files: dict[tuple[int, str], list[bytes]] = defaultdict(list)
    i = 0
    while i < n:
        u = rng.randrange(users)
        at = start + timedelta(seconds=rng.uniform(0, 86_399))
        received = at + timedelta(
            seconds=rng.uniform(0.05, 2) if rng.random() > 0.02 else rng.uniform(0, 86_400)
        )
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
                retry = received + timedelta(seconds=rng.uniform(1, 600))
                event = {**event, "receivedAt": format_ts(retry)}
            files[(u % 6, event["receivedAt"][:13])].append(orjson.dumps(event))
            i += 1
    paths = []
    for (partition, hour), lines in sorted(files.items()):
        path = workdir / f"raw-{hour}-{partition}.jsonl.gz"
        path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n", compresslevel=6, mtime=0))
        paths.append(path)
    return paths


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
    """What ``run_day`` does for local engines once the objects are local: plain JSONL."""
    packed = workdir / "packed.jsonl"
    with packed.open("wb") as sink:
        for path in paths:
            sink.write(gzip.decompress(path.read_bytes()))
    snapshot = workdir / "snapshot.jsonl"
    snapshot.write_bytes(b"")
    return [str(packed), str(snapshot)]


def job(inputs: list[str], workdir: Path) -> dict[str, list[dict[str, Any]]]:
    return run_job(job_args(Settings(), DAY, "local", workdir), inputs)


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


def run(events: int | None = None) -> dict[str, Any]:
    n = events or int(os.environ.get("EVENTPIPE_BENCH_REPROCESS_EVENTS", "1000000"))
    with tempfile.TemporaryDirectory(prefix="ep-bench-reprocess-") as tmp:
        workdir = Path(tmp)
        paths = generate(workdir, n)
        started = time.perf_counter()
        expected = ceiling(paths)
        ceiling_s = time.perf_counter() - started
        started = time.perf_counter()
        inputs = pack(paths, workdir)
        found = job(inputs, workdir)
        job_s = time.perf_counter() - started
        by_spark, spark_startup_s, spark_s = spark(inputs)
    if found != expected:
        raise AssertionError("the job and the single-process pass disagree")
    if by_spark != expected:
        raise AssertionError("the Spark engine and the single-process pass disagree")
    cores = os.cpu_count() or 1
    job_us = job_s * cores / n * 1e6
    spark_us = spark_s * cores / n * 1e6
    return {
        "events_per_s": round(n / job_s),
        "ceiling_events_per_s": round(n / ceiling_s),
        "spark_events_per_s": round(n / spark_s),
        "events": n,
        "job_s": round(job_s, 1),
        "ceiling_s": round(ceiling_s, 1),
        "spark_s": round(spark_s, 1),
        "spark_startup_s": round(spark_startup_s, 1),
        "cores": cores,
        "job_core_us_per_event": round(job_us, 1),
        "spark_core_us_per_event": round(spark_us, 1),
        "emr_1b_events_day": {"mrjob": project(job_us), "spark": project(spark_us)},
        "rows": {t: len(r) for t, r in found.items()},
    }


if __name__ == "__main__":
    print(orjson.dumps(run(), option=orjson.OPT_INDENT_2).decode())
