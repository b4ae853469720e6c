"""The first reducer's own driver (``ReprocessJob.run_reducer`` for step 0: groups by the key's
bytes, a lone copy's output cut from its line) writes exactly what mrjob's generic driver
writes (decode every line, group, ``reduce_copies``, encode) over the same sorted input."""

from __future__ import annotations

import io

import orjson
from hypothesis import given, settings
from mrjob.job import MRJob

from eventpipe.loader.reprocess.job import ReprocessJob
from eventpipe.loader.reprocess.packed import grouped_output
from eventpipe.loader.reprocess.steps import map_line, pack_event
from tests.support.histories import DAY, histories, job_lines, split


def reducer_output(lines: list[bytes], generic: bool) -> bytes:
    job = ReprocessJob(["--day", DAY.isoformat(), "--packed-inputs", "--reducer", "--step-num", "0"])
    out = io.BytesIO()
    job.sandbox(stdin=io.BytesIO(b"".join(line + b"\n" for line in lines)), stdout=out)
    if generic:
        MRJob.run_reducer(job, 0)
    else:
        job.run_reducer(0)
    return out.getvalue()


@settings(max_examples=25, deadline=None)
@given(history=histories(max_events=40))
def test_the_first_reducer_writes_what_mrjobs_driver_writes(history):
    window, _, snapshot = split(history)
    packed = [pack_event(line, orjson.loads(line), DAY) for line in job_lines(window, [])]
    packed += [p for line in job_lines([], snapshot) for p in map_line(line, DAY, checked=True)]
    packed += packed[::5]  # more copies of some messages
    lines = sorted(packed, key=lambda line: line.split(b"\t", 1)[0])  # sort -t TAB -k 1,1 -s
    fast = reducer_output(lines, generic=False)
    assert fast == reducer_output(lines, generic=True)


def test_output_comes_in_blocks_of_whole_groups():
    lines = [b"a\t1", b"a\t2", b"b\t3", b"c\t4", b"c\t5", b"d\t6"]
    blocks = list(grouped_output(lines, lambda group: [b"+".join(group)], block=2))
    assert blocks == [b"a\t1+a\t2\nb\t3\n", b"c\t4+c\t5\nd\t6\n"]
    assert list(grouped_output([], lambda group: group)) == []
