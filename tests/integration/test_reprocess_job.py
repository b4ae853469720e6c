"""The reprocess job with the inline (and once the local) runner over raw objects in the
real S3 API server: its corrections equal the reference truth.

Also home of the helpers the warehouse tests share: archiving a history as the stream
would (raw objects per partition and hour) and streaming it through the stream's fold.
"""

from __future__ import annotations

import uuid
import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings

from eventpipe.keys import agg_key, raw_key
from eventpipe.loader.reprocess.inputs import download_inputs, raw_objects
from eventpipe.loader.reprocess.rows import window
from eventpipe.loader.reprocess.runjob import job_args, run_job
from eventpipe.s3 import gzip_json_rows
from eventpipe.settings import Settings
from eventpipe.stream.fold import TABLES, Deltas, PartitionState
from eventpipe.timeutil import parse_ts
from tests.unit.test_reprocess_histories import (
    DAY,
    LATENESS,
    as_found,
    expected,
    histories,
    job_lines,
    split,
)

pytestmark = pytest.mark.integration
PARTITIONS = 6


def partition_of(event: dict[str, Any]) -> int:
    return zlib.crc32((event.get("userId") or event["anonymousId"]).encode()) % PARTITIONS


def arrival_order(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(history, key=lambda e: e["receivedAt"])


def stream_cuts(
    history: list[dict[str, Any]], first_offset: int = 0
) -> list[tuple[int, list[tuple[int, dict]]]]:
    """The stream's cuts: per partition in arrival order, cut at each hour boundary of
    ``receivedAt``; each cut is (partition, [(offset, event), ...]) in offset order."""
    cuts, offsets = defaultdict(list), defaultdict(lambda: first_offset)
    for event in arrival_order(history):
        p = partition_of(event)
        cuts[(p, event["receivedAt"][:13])].append((offsets[p], event))
        offsets[p] += 1
    return [(p, batch) for (p, _), batch in sorted(cuts.items())]


def archive(s3: Any, settings: Settings, history: list[dict[str, Any]], first_offset: int = 0) -> list[str]:
    """Raw objects as the stream writes them, named by partition and first offset."""
    keys = []
    for p, batch in stream_cuts(history, first_offset):
        key = settings.s3_prefix + raw_key(parse_ts(batch[0][1]["receivedAt"]), p, batch[0][0])
        s3.put_object(Bucket=settings.s3_bucket, Key=key, Body=gzip_json_rows(e for _, e in batch))
        keys.append(key)
    return keys


def stream_deltas(
    history: list[dict[str, Any]], states: dict[int, PartitionState] | None = None, first_offset: int = 0
) -> dict[str, list[tuple[str, list[dict[str, Any]]]]]:
    """The stream's fold over ``history`` in arrival order: per table, (agg key, delta rows)
    of each cut, named like its raw object (contracts §3: same partition, first offset and
    date). Pass ``states`` to continue a stream that already ran."""
    states = states if states is not None else {}
    out: dict[str, list] = {t: [] for t in TABLES}
    for p, batch in stream_cuts(history, first_offset):
        deltas, state = Deltas(), states.setdefault(p, PartitionState())
        for offset, event in batch:
            state.apply(offset, event, deltas)
        written = parse_ts(batch[0][1]["receivedAt"])
        for table in TABLES:
            out[table].append((agg_key(table, p, batch[0][0], written), deltas.rows(table)))
    return out


def fresh(settings: Settings) -> Settings:
    """A sub-prefix per hypothesis example (the fixture's prefix is per test)."""
    return settings.model_copy(update={"s3_prefix": f"{settings.s3_prefix}{uuid.uuid4().hex[:8]}/"})


def run_inline(s3: Any, settings: Settings, tmp: Path, snapshot: list[dict], runner: str = "inline") -> dict:
    objects = raw_objects(s3, settings, window(DAY, LATENESS))
    inputs = download_inputs(s3, settings, objects, tmp)
    snap = tmp / "snapshot.jsonl"
    snap.write_bytes(b"".join(line + b"\n" for line in job_lines([], snapshot)))
    return run_job(job_args(settings, DAY, runner, tmp), [*inputs.paths, str(snap)])


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories(max_events=60))
def test_inline_job_over_s3_equals_the_truth(s3, settings, tmp_path, history):
    example = fresh(settings)
    archive(s3, example, history)
    _, visible, snapshot = split(history)
    workdir = tmp_path / example.s3_prefix.replace("/", "_")
    workdir.mkdir()
    corrections = run_inline(s3, example, workdir, snapshot)
    assert as_found(corrections, snapshot) == expected(visible)


ONE = settings(max_examples=1, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@ONE
@seed(5)
@given(history=histories(max_events=80))
def test_local_runner_equals_inline(s3, settings, tmp_path, history):
    """mrjob's local runner (subprocesses, sort, 2 x cores splits) on Python 3.11."""
    archive(s3, settings, history)
    _, _, snapshot = split(history)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    inline = run_inline(s3, settings, tmp_path / "a", snapshot)
    assert run_inline(s3, settings, tmp_path / "b", snapshot, runner="local") == inline


@ONE
@seed(6)
@given(history=histories(max_events=60))
def test_downloaded_inputs_hold_every_line_of_the_window(s3, settings, tmp_path, history):
    archive(s3, settings, history)
    window_events, _, _ = split(history)
    objects = raw_objects(s3, settings, window(DAY, LATENESS))
    inputs = download_inputs(s3, settings, objects, tmp_path, progress=True)
    lines = [line for path in inputs.paths for line in Path(path).read_bytes().splitlines()]
    assert inputs.lines == len(lines) == len(window_events)
