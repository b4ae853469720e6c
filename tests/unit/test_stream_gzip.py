"""The stream's objects are gzipped with ISA-L (``eventpipe.s3.gzip_lines`` at levels 0-3):
every reader decodes them with the standard library unchanged, the bytes are deterministic
(a replay writes the same object), and the zlib levels keep their exact output."""

from __future__ import annotations

import gzip
import zlib
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st
from isal import igzip

from eventpipe.s3 import gzip_json_rows, gzip_lines, iter_gzip_lines
from eventpipe.stream.batch import PartitionBatch, gzip_raw
from eventpipe.stream.cuts import CutPolicy
from tests.support.batches import event, fill
from tests.support.clock import ManualClock

T0 = datetime(2026, 11, 26, 9, 0, 0, tzinfo=UTC)
# bytes with newlines anywhere (also trailing, also empty lines): the JSONL body's rule
LINES = st.lists(st.binary(max_size=40) | st.sampled_from([b"", b"\n", b"{}\n\n", b'{"a":1}']), max_size=30)


def one_per_line(lines: list[bytes]) -> bytes:
    """The body's definition, line by line: each line without its trailing newlines, plus one."""
    return b"".join(line.rstrip(b"\n") + b"\n" for line in lines)


@given(LINES, st.sampled_from([0, 1, 2, 3, 6, 9]))
def test_any_level_decodes_with_the_standard_library_to_one_line_per_item(lines, level) -> None:
    body = gzip_lines(lines, level)
    assert gzip.decompress(body) == one_per_line(lines)
    assert gzip_lines(iter(lines), level) == body  # an iterator gives the same bytes as a list
    assert gzip_lines(list(lines), level) == body  # deterministic: a replay writes the same bytes


@given(LINES)
def test_the_fast_levels_are_isa_l_and_the_zlib_levels_are_unchanged(lines) -> None:
    assert gzip_lines(lines, 1) == igzip.compress(one_per_line(lines), 1, mtime=0)
    assert gzip_lines(lines, 9) == gzip.compress(one_per_line(lines), 9, mtime=0)


@given(LINES, st.integers(1, 8))
def test_the_raw_body_in_pieces_is_one_gzip_member_of_one_line_per_value(lines, piece) -> None:
    body = gzip_raw(lines, piece)
    member = zlib.decompressobj(16 + zlib.MAX_WBITS)
    assert member.decompress(body) == one_per_line(lines)
    assert member.eof and not member.unused_data  # one member: every gzip reader takes it
    assert body[4:8] == bytes(4)  # mtime 0
    assert gzip_raw(list(lines), piece) == body  # deterministic: a replay writes the same bytes


def test_a_cuts_objects_decode_with_the_standard_library() -> None:
    values = [event(n, T0 + timedelta(seconds=n)) for n in range(30)]
    batch = PartitionBatch(0, CutPolicy(1000, 1 << 20, 10, ManualClock()))
    fill(batch, values)
    objects = batch.objects(False, T0)
    raw = next(o for o in objects if o.table == "events")
    assert gzip.decompress(raw.body).splitlines() == values  # the Kafka values, unchanged
    assert gzip_raw(values) == raw.body  # what the writer's thread makes for the same cut
    aggregates = [o for o in objects if o.table not in ("events", "rejected")]
    assert aggregates
    for obj in aggregates:
        assert len(list(iter_gzip_lines(obj.body))) == obj.rows
        assert gzip.decompress(obj.body).count(b"\n") == obj.rows


def test_json_rows_are_one_object_per_line() -> None:
    rows = [{"day": "2026-11-26", "n": i} for i in range(3)]
    assert gzip.decompress(gzip_json_rows(rows, 1)) == b"".join(
        b'{"day":"2026-11-26","n":%d}\n' % i for i in range(3)
    )
