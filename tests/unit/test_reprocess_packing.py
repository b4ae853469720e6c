"""``packing.ParallelPacker``: worker processes pack what one ``Packer`` packs -- the same
lines (in other files), the same counts, the refused objects in the same order; every packed
line's stored reference reads back its own raw line."""

from __future__ import annotations

import gzip
from pathlib import Path

import orjson
import pytest

from eventpipe.loader.reprocess.inputs import Inputs, Packer
from eventpipe.loader.reprocess.packed import Copy, read_packed
from eventpipe.loader.reprocess.packing import ParallelPacker
from tests.support.histories import DAY


def event(i: int) -> bytes:
    at = f"2026-11-26T10:00:{i % 60:02d}.000Z"
    fields = {"type": "track", "event": "Product Viewed", "messageId": f"m-{i}", "userId": f"u-{i % 7}"}
    times = {"timestamp": at, "receivedAt": at, "originalTimestamp": at, "sentAt": at}
    return orjson.dumps({**fields, "anonymousId": None, "properties": {}, **times, "source": "dev"})


def objects() -> list[tuple[str, bytes]]:
    found = []
    for n in range(12):
        lines = b"".join(event(n * 10 + i) + b"\n" for i in range(10))
        found.append((f"raw/events/dt=2026-11-26/hr=10/events+0+{n:019d}.jsonl.gz", gzip.compress(lines)))
    found[3] = (found[3][0], b"not gzip")  # refused: bad_gzip
    found[8] = (found[8][0], gzip.compress(b'{"type": "track"}\n'))  # refused: no messageId
    return found


def resolved(line: bytes) -> tuple[object, list[tuple[bytes, bytes]], bytes]:
    """A packed line as the first reducer sees it, its raw line read back from the store
    (which file holds it differs between packers)."""
    key, copy = read_packed(line)
    assert isinstance(copy, Copy) and copy.stored
    return key, copy.outputs, copy.line()


def packed(workdir: Path, workers: int) -> tuple[Inputs, list[tuple]]:
    out = Inputs()
    packer = ParallelPacker(workdir, out, DAY, workers) if workers else Packer(workdir, out, DAY)
    for key, body in objects():
        packer.add(key, body)
    packer.close()
    lines = sorted(resolved(line) for path in out.paths for line in Path(path).read_bytes().splitlines())
    return out, lines


def test_every_stored_line_reads_back_as_the_object_held_it(tmp_path):
    _, lines = packed(tmp_path, 0)
    good = [body for n, (_, body) in enumerate(objects()) if n not in (3, 8)]
    sent = sorted(gzip.decompress(body).splitlines() for body in good)
    assert sorted(raw for _, _, raw in lines) == sorted(line for body in sent for line in body)
    assert all(orjson.loads(raw)["messageId"] == key for key, _, raw in lines)


def test_workers_pack_what_one_packer_packs(tmp_path):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one, one_lines = packed(tmp_path / "one", 0)
    two, two_lines = packed(tmp_path / "two", 2)
    assert two_lines == one_lines and len(one_lines) == 100
    assert (two.objects, two.lines) == (one.objects, one.lines) == (10, 100)
    assert [c.key for c in two.corrupt] == [c.key for c in one.corrupt] == [objects()[3][0], objects()[8][0]]
    assert [c.reason for c in two.corrupt] == [c.reason for c in one.corrupt]
    assert all(Path(p).parent == tmp_path / "two" for p in two.paths)


def test_one_worker_packs_in_this_process(tmp_path):
    out, lines = packed(tmp_path, 1)
    assert out.paths == [str(tmp_path / "raw-0.jsonl")] and len(lines) == 100


def test_a_work_dir_with_a_tab_is_refused_clearly(tmp_path):
    odd = tmp_path / "a\tb"
    odd.mkdir()
    packer = Packer(odd, Inputs(), DAY)
    with pytest.raises(ValueError, match="must not hold a tab or newline"):
        packer.add(*objects()[0])
