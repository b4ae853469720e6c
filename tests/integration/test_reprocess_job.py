"""The reprocess job with the inline (and once the local) runner over raw objects in the
real S3 API server: its corrections equal the reference truth.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings

from eventpipe.loader.reprocess.inputs import download_inputs, raw_objects
from eventpipe.loader.reprocess.rows import window
from eventpipe.loader.reprocess.runjob import job_args, run_job
from eventpipe.settings import Settings
from tests.support.archive import archive
from tests.support.histories import DAY, LATENESS, as_found, expected, histories, job_lines, split

pytestmark = pytest.mark.integration


def fresh(settings: Settings) -> Settings:
    """A sub-prefix per hypothesis example (the fixture's prefix is per test)."""
    return settings.model_copy(update={"s3_prefix": f"{settings.s3_prefix}{uuid.uuid4().hex[:8]}/"})


def run_inline(s3: Any, settings: Settings, tmp: Path, snapshot: list[dict], runner: str = "inline") -> dict:
    objects = raw_objects(s3, settings, window(DAY, LATENESS))
    inputs = download_inputs(s3, settings, objects, tmp, DAY)
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
    inputs = download_inputs(s3, settings, objects, tmp_path, DAY, progress=True)
    lines = [line for path in inputs.paths for line in Path(path).read_bytes().splitlines()]
    assert inputs.lines == len(lines) == len(window_events)
