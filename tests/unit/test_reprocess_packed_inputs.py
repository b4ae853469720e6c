"""Local runs have no first mapper (``--packed-inputs``): ``runjob.run_job`` packs the plain
snapshot files itself, the Packer's files pass as they are, and the rows stay the truth and
equal to the run with the first mapper (the EMR/Hadoop shape)."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings

from eventpipe.loader.reprocess.inputs import Inputs, Packer
from eventpipe.loader.reprocess.job import ReprocessJob
from eventpipe.loader.reprocess.packed import is_packed
from eventpipe.loader.reprocess.runjob import job_args, packed_file, run_job
from eventpipe.loader.reprocess.steps import pack_event
from eventpipe.settings import Settings
from tests.support.histories import DAY, as_found, expected, histories, job_lines, split


def write_inputs(tmp: Path, window: list[dict], snapshot: list[dict]) -> list[str]:
    raw, snap = tmp / "raw-0.jsonl", tmp / "snapshot.jsonl"
    raw.write_bytes(
        b"".join(pack_event(line, orjson.loads(line), DAY) + b"\n" for line in job_lines(window, []))
    )
    snap.write_bytes(b"".join(line + b"\n" for line in job_lines([], snapshot)))
    return [str(raw), str(snap)]


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories(max_events=40))
def test_without_the_first_mapper_the_rows_are_the_truth_and_the_same(tmp_path_factory, history):
    window, visible, snapshot = split(history)
    inputs = write_inputs(tmp_path_factory.mktemp("inputs"), window, snapshot)
    args = job_args(Settings(), DAY, "inline")
    assert "--packed-inputs" in args
    with_mapper = [a for a in args if a != "--packed-inputs"]
    found = run_job(args, inputs)
    assert as_found(found, snapshot) == expected(visible)
    assert run_job(with_mapper, inputs) == found


def test_packed_file_packs_plain_rows_and_leaves_packed_files(tmp_path):
    snapshot = {
        "experiment_id": "x",
        "user_key": "u",
        "variant": "a",
        "first_exposed_at": "2026-11-25T00:00:00.000Z",
    }
    inputs = write_inputs(tmp_path, [], [snapshot])
    packed = packed_file(inputs[1], DAY)
    assert packed != inputs[1]
    assert [is_packed(line) for line in Path(packed).read_bytes().splitlines()] == [True]
    raw = tmp_path / "raw-1.jsonl"
    raw.write_bytes(Path(packed).read_bytes())
    assert packed_file(str(raw), DAY) == str(raw)
    assert packed_file(inputs[0], DAY) == inputs[0]  # empty: nothing to pack


def test_the_runner_sees_no_first_mapper_with_packed_inputs():
    packed = ReprocessJob(["--day", DAY.isoformat(), "--packed-inputs"])._steps_desc()
    assert "mapper" not in packed[0] and "reducer" in packed[0]
    plain = ReprocessJob(["--day", DAY.isoformat()])._steps_desc()
    assert "mapper" in plain[0]


def test_the_hops_pass_items_as_bytes_and_decode_links_and_targets():
    job = ReprocessJob(["--day", DAY.isoformat()])
    read, write = job.pick_protocols(1, "reducer")
    event = b'"anon-1"\t["event",{"messageId":"m","type":"track","x":[1,"\\t"]}]'
    key, value = read(event)
    assert key == "anon-1" and value[1] == event.split(b"\t", 1)[1]
    assert write("user-1", value) == b'"user-1"\t' + value[1]
    link = b'"anon-1"\t["link",["user-1","2026-11-26T00:00:00.000Z","m2"]]'
    assert read(link) == ("anon-1", ["link", ["user-1", "2026-11-26T00:00:00.000Z", "m2"]])
    assert read(b'"anon-1"\t["target","user-1"]') == ("anon-1", ["target", "user-1"])
    assert write("anon-1", ["target", "user-1"]) == b'"anon-1"\t["target","user-1"]'
    assert job.pick_protocols(2, "reducer")[0](event) == (key, value)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories(max_events=40))
def test_lines_the_packer_stored_give_the_truth(tmp_path_factory, history):
    """The ``Packer`` keeps raw lines out of the packed ones (``r`` lines, ``packed.store_ref``):
    messages with several copies read theirs back from the store and deduplicate them."""
    window, visible, snapshot = split(history)
    tmp = tmp_path_factory.mktemp("stored")
    lines = job_lines(window, [])
    out = Inputs()
    packer = Packer(tmp, out, DAY)
    for n in range(3):  # copies of one message land in different objects and files
        packer.add(f"raw/events/dt=2026-11-26/hr=0{n}/x.jsonl.gz", gzip.compress(b"\n".join(lines[n::3])))
    packer.close()
    snap = tmp / "snapshot.jsonl"
    snap.write_bytes(b"".join(line + b"\n" for line in job_lines([], snapshot)))
    found = run_job(job_args(Settings(), DAY, "inline"), [*out.paths, str(snap)])
    assert as_found(found, snapshot) == expected(visible)
