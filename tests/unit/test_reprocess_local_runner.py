"""The local runner's byte-range splits (``reprocess.local_runner.boundaries``): whole lines,
and for sorted reducer input whole key groups, covering the file exactly once."""

from __future__ import annotations

import io
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from eventpipe.loader.reprocess.job import ReprocessJob
from eventpipe.loader.reprocess.local_runner import ByteSplitLocalRunner, boundaries

lines = st.lists(
    st.tuples(st.sampled_from([b'"a"', b'"b"', b'"c"', b"[1]", b'"m\\t"']), st.binary(max_size=30)).map(
        lambda kv: kv[0] + b"\t" + kv[1].replace(b"\n", b" ") + b"\n"
    ),
    max_size=60,
)


def parts_of(body: bytes, parts: int, by_key: bool) -> list[bytes]:
    cuts = boundaries(io.BytesIO(body), len(body), parts, by_key)
    assert cuts[0] == 0 and cuts[-1] == len(body) and cuts == sorted(cuts)
    return [body[a:b] for a, b in pairwise(cuts)]


@given(lines, st.integers(1, 9))
def test_map_splits_are_whole_lines_in_order(found, parts):
    body = b"".join(found)
    pieces = parts_of(body, parts, by_key=False)
    assert b"".join(pieces) == body
    assert 1 <= len(pieces) <= parts
    assert all(p.endswith(b"\n") for p in pieces if p)
    assert all(p for p in pieces) or body == b""


@given(lines, st.integers(1, 9))
def test_reduce_splits_never_cut_a_key_group(found, parts):
    body = b"".join(sorted(found, key=lambda line: line.split(b"\t", 1)[0]))
    pieces = parts_of(body, parts, by_key=True)
    assert b"".join(pieces) == body
    # lines end at b"\n" only (bytes.splitlines would also cut at a b"\r" inside a value)
    keys = [{line.split(b"\t", 1)[0] for line in p.split(b"\n") if line} for p in pieces]
    for i, mine in enumerate(keys):
        assert all(not (mine & other) for other in keys[i + 1 :])


def test_an_empty_file_is_one_empty_split():
    assert parts_of(b"", 4, by_key=True) == [b""]


def test_the_job_runs_local_with_the_byte_split_runner():
    local = ReprocessJob(["-r", "local", "--day", "2026-11-26"])
    assert local._runner_class() is ByteSplitLocalRunner
    inline = ReprocessJob(["-r", "inline", "--day", "2026-11-26"])
    assert inline._runner_class() is not ByteSplitLocalRunner
