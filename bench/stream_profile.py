"""Where the stream worker's CPU goes, per event: ``python -m bench.stream_profile [stages|spy] [events]``.

``stages`` (no Kafka, no S3): the bench's own events (``bench.stream._values``), split over
six partitions by user key and fed through the worker's real pure path -- ``parse_event``,
the cut policy, ``PartitionBatch.add_event``, the run fold (``fold_many``) per fetched run of
5,000, at each cut (10,000 events, as the bench) the objects, their gzip, the changelog
records and the seal -- with each stage timed in its own pass (``time.process_time``), so no
per-call timer is inside the loop it measures. Hashing and decoding are also timed on their
own (the fold and the validation include them) and subtracted; the raw object's JSONL body
(the join inside its gzip) is timed alone too, and the raw gzip's MB of JSONL per CPU-second.
What it cannot see: Kafka fetching, S3 calls, the event loop and the web server; those are
what ``spy`` shows.

Since the worker folds on the columnar path (``columns.decode_run`` + ``columnar.fold_slice``
for every fetch whose records are all foldable), ``stages`` also times that path over the same
fetches and prints it beside the row-path stages it replaces (the row path still runs for a
fetch holding an invalid record), and that path's changelog records and seal at each cut.

``spy``: the bench's real worker process over a pre-filled topic (``bench.stream``'s run,
only the worker part) sampled by py-spy (on-CPU samples only, every thread), each sample put
in the stage of the innermost frame that names one (``SPY_STAGES``), its share times the
worker's CPU-µs per event from the same run.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from bench.common import ROOT, VENV_BIN
from eventpipe.s3 import gzip_body, jsonl
from eventpipe.stream.batch import RAW_GZIP_LEVEL, PartitionBatch, decode_run, gzip_raw, parse_event
from eventpipe.stream.cuts import CutPolicy
from eventpipe.stream.fold import TABLES
from eventpipe.stream.marks import key_hash

PARTITIONS, FETCH, CUT = 6, 5_000, 10_000
RAW_BODY, RAW_BYTES = "gzip raw object: of which the JSONL body (join)", "raw JSONL bytes"


class _Still:
    def monotonic(self) -> float:
        return 0.0  # the wall-clock cut never fires here: cuts are by count, as in the bench


@contextmanager
def _timed(totals: dict[str, float], stage: str) -> Iterator[None]:
    started = time.process_time()
    yield
    totals[stage] += time.process_time() - started


def _by_partition(values: list[tuple[bytes, bytes]]) -> list[list[bytes]]:
    parts: list[list[bytes]] = [[] for _ in range(PARTITIONS)]
    for key, value in values:
        parts[zlib.crc32(key) % PARTITIONS].append(value)
    return parts


def _cut(batch: PartitionBatch, t: dict[str, float]) -> None:
    with _timed(t, "fold (incl. hashing)"):
        batch.fold()
    first, last = batch.policy.first_offset, batch.policy.last_offset
    with _timed(t, "aggregate rows"):  # as the worker makes them: their JSONL, one orjson call
        bodies = [batch.deltas.jsonl(table) for table in TABLES]
    with _timed(t, "gzip aggregate objects"):
        for body in bodies:
            if body:
                gzip_body(body, RAW_GZIP_LEVEL)
    with _timed(t, "gzip raw object"):
        gzip_raw(batch.lines)
    with _timed(t, RAW_BODY):  # what of it is the JSONL body (the join), not the compression
        t[RAW_BYTES] += len(jsonl(batch.lines))
    with _timed(t, "changelog records"):
        records = batch.state.cut_records(first, last)
        _ = [orjson.dumps(key) for key, _ in records]
        batch.state.written(records)
    with _timed(t, "seal (commit)"):
        batch.state.seal(last)
    batch.reset()


def _partition(values: list[bytes], t: dict[str, float]) -> None:
    batch = PartitionBatch(0, CutPolicy(CUT, 16 * 1024 * 1024, 1.0, _Still()))
    offset = 0
    for start in range(0, len(values), FETCH):
        run = values[start : start + FETCH]
        with _timed(t, "decode (orjson.loads)"):
            _ = [orjson.loads(v) for v in run]
        with _timed(t, "decode + validation"):
            events = [parse_event(v) for v in run]
        with _timed(t, "extract"):
            folded = [batch.state.extract(e) for e in events]
        with _timed(t, "hashing (2 XXH3-64)"):
            _ = [key_hash(f.message_id) for f in folded]
            _ = [key_hash(f.user) for f in folded if f.name is not None and f.user is not None]
        for value, event in zip(run, events, strict=True):
            # the pipeline's order; add_event extracts again (timed above on its own)
            started = time.process_time()
            reason = batch.before(offset, event, len(value))
            if reason:
                t["cut policy + buffering (incl. extract)"] += time.process_time() - started
                _cut(batch, t)
                started = time.process_time()
            reason = batch.add_event(offset, value, event)
            t["cut policy + buffering (incl. extract)"] += time.process_time() - started
            offset += 1
            if reason:
                _cut(batch, t)
        with _timed(t, "fold (incl. hashing)"):
            batch.fold()
    if batch.policy.is_open:
        _cut(batch, t)


def _columnar_partition(values: list[bytes], t: dict[str, float]) -> None:
    """The worker's columnar path over the same fetches: ``decode_run`` (decode, checks,
    extract) and ``fold_slice`` (through ``PartitionBatch.fold``), each timed; the cut
    policy, the buffering and the cut's objects untimed (the row pass times them)."""
    batch = PartitionBatch(0, CutPolicy(CUT, 16 * 1024 * 1024, 1.0, _Still()))
    offset = 0

    def cut() -> None:
        with _timed(t, "columnar: fold_slice (fold incl. hashing)"):
            batch.fold()
        with _timed(t, "columnar cut: changelog records"):
            records = batch.state.cut_records(batch.policy.first_offset, batch.policy.last_offset)
            _ = [orjson.dumps(key) for key, _ in records]
            batch.state.written(records)
        with _timed(t, "columnar cut: seal (commit)"):
            batch.state.seal(batch.policy.last_offset)
        batch.reset()

    for start in range(0, len(values), FETCH):
        chunk = values[start : start + FETCH]
        with _timed(t, "columnar: decode_run (decode + validation + extract)"):
            run = decode_run(batch.state, chunk)
        if run is None:
            raise RuntimeError("the bench's events must all take the columnar path")
        for i, value in enumerate(chunk):
            if batch.before(offset, run.events[i], len(value)):
                cut()
            reason = batch.add_event(offset, value, run.events[i], run, i)
            offset += 1
            if reason:
                cut()
        with _timed(t, "columnar: fold_slice (fold incl. hashing)"):
            batch.fold()
    if batch.policy.is_open:
        cut()


def stages(events: int) -> dict[str, float]:
    """CPU µs per event of each pure stage (module docstring), with the collector tuned as
    the worker tunes it (its young passes over a fetched run were ~10 µs per event)."""
    from bench.stream import _values
    from eventpipe.gctune import freeze_and_tune

    freeze_and_tune()
    values = _values(events)
    t: dict[str, float] = collections.defaultdict(float)
    # the per-event timer pair of the buffering loop, measured alone so it can be taken off
    started = time.process_time()
    for _ in values:
        time.process_time()
        time.process_time()
    timer = time.process_time() - started
    for part in _by_partition(values):
        _partition(part, t)
        _columnar_partition(part, t)
    t["cut policy + buffering (incl. extract)"] -= timer
    raw_bytes = t.pop(RAW_BYTES)
    us = {stage: seconds / len(values) * 1e6 for stage, seconds in t.items()}
    us["validation"] = us["decode + validation"] - us["decode (orjson.loads)"]
    us["cut policy + buffering"] = us.pop("cut policy + buffering (incl. extract)") - us["extract"]
    us["fold (without hashing)"] = us["fold (incl. hashing)"] - us["hashing (2 XXH3-64)"]
    del us["decode + validation"], us["fold (incl. hashing)"]
    columnar = {stage: us.pop(stage) for stage in list(us) if stage.startswith("columnar")}
    columnar_cut = {
        stage: columnar.pop(stage) for stage in list(columnar) if stage.startswith("columnar cut:")
    }
    body = us.pop(RAW_BODY)  # part of "gzip raw object": out of the total, shown below
    us["total of the pure stages"] = sum(us.values())
    us[RAW_BODY] = body
    us["gzip raw object: JSONL MB per CPU-second (body + compression)"] = (
        raw_bytes / len(values) / us["gzip raw object"]
    )
    replaced = ("decode (orjson.loads)", "validation", "extract", "hashing (2 XXH3-64)")
    replaced += ("fold (without hashing)",)
    us["row path: decode + validation + extract + fold (what the columnar path replaces)"] = sum(
        us[stage] for stage in replaced
    )
    us |= columnar
    us["columnar: decode_run + fold_slice"] = sum(columnar.values())
    us |= columnar_cut  # the worker's cut-side state costs (the row pass's above: its live
    # entries are written one at a time, so its cut moves them into the columns first)
    return {stage: round(value, 2) for stage, value in us.items()}


# innermost-first: a sample belongs to the first stage one of its frames names
SPY_STAGES: list[tuple[str, Callable[[str], bool]]] = [
    ("gzip", lambda f: "gzip" in f or "zlib" in f),
    ("S3 (boto3/botocore, threads)", lambda f: "botocore" in f or "boto3" in f or "urllib3" in f),
    ("changelog (records + produce)", lambda f: "changelog.py" in f or "cutrecord.py" in f),
    ("seal / marks", lambda f: "(seal)" in f or "marks.py" in f),
    ("fold", lambda f: "fold.py" in f or "columnar.py" in f),
    ("aggregate rows", lambda f: "deltas.py" in f),
    ("decode + validation", lambda f: "parse_event" in f or "columns.py" in f),
    ("cut policy + buffering", lambda f: "batch.py" in f or "cuts.py" in f),
    ("commit / fence / notices", lambda f: "writer.py" in f),
    ("Kafka fetch (aiokafka)", lambda f: "aiokafka" in f or "kafka/" in f),
    ("pipeline loop", lambda f: "pipeline.py" in f),
    ("metrics / web (/metrics scrapes)", lambda f: "prometheus" in f or "aiohttp" in f),
]


def classify(stack: str) -> str:
    frames = stack.split(";")[::-1]  # py-spy's raw format: outermost first
    for frame in frames:
        for stage, matches in SPY_STAGES:
            if matches(frame):
                return stage
    return "other (event loop, faust/mode, threads' own)"


def spy(events: int) -> dict[str, Any]:
    """py-spy over the bench's worker (module docstring): share of samples and µs per event."""
    import bench.stream as bs

    out = Path(tempfile.mkdtemp(prefix="stream-spy-")) / "worker.txt"
    wrapper = out.with_name("python-under-spy")
    # the wrapper becomes the worker (exec keeps its pid, which the bench reads CPU time of
    # and signals); py-spy attaches to that pid and writes its samples once the worker exits
    wrapper.write_text(
        f"#!/bin/sh\n(sleep 1; exec {VENV_BIN / 'py-spy'} record --pid $$ --format raw -r 200 --threads "
        f'--nonblocking -o {out} >/dev/null 2>&1) &\nexec {bs.python_exe()} "$@"\n'
    )
    wrapper.chmod(0o755)
    rate, cpu_us = bs.worker_only(str(wrapper), f"spy-{os.getpid()}", events)
    deadline = time.monotonic() + 30
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.5)  # py-spy writes its file once the worker has exited
    counts: collections.Counter[str] = collections.Counter()
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        counts[classify(stack)] += int(n)
    total = sum(counts.values())
    return {
        "events_per_s": round(rate),
        "worker_cpu_us_per_event": round(cpu_us, 1),
        "samples": total,
        "note": "py-spy slows the worker a little; read shares",
        "stages": {
            stage: {"share": round(n / total, 3), "us_per_event": round(n / total * cpu_us, 2)}
            for stage, n in counts.most_common()
        },
    }


if __name__ == "__main__":
    mode = sys.argv[1] if sys.argv[1:] else "stages"
    n = int(sys.argv[2]) if sys.argv[2:] else 100_000
    result = stages(n) if mode == "stages" else spy(n)
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    subprocess.run(["uptime"], cwd=ROOT, check=False)
