"""The live columns (``live.Live``) against a plain dict ``hash -> (offset, tag)``: every
operation the folds, the cut records, the seal, the prune and the restore use, in random
order, with levels small enough that the small level is merged into the large one often."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventpipe.stream import live as live_module
from eventpipe.stream.live import Live

KEYS = st.integers(0, 40).map(lambda k: (k * 0x9E3779B97F4A7C15) % 2**64)  # few keys, spread
ENTRY = st.tuples(KEYS, st.integers(0, 30), st.integers(0, 5))  # (hash, offset, tag)

OPS = st.one_of(
    st.tuples(st.just("set"), ENTRY),
    st.tuples(st.just("add"), st.lists(ENTRY, max_size=12)),
    st.tuples(st.just("move"), st.lists(ENTRY, max_size=12), st.booleans()),
    st.tuples(st.just("lowest"), st.lists(ENTRY, max_size=12)),
    st.tuples(st.just("seal"), st.integers(0, 30)),
    st.tuples(st.just("prune"), st.integers(0, 5)),
    st.tuples(st.just("stored"), st.lists(KEYS, max_size=12)),
)


def _arrays(entries: list[tuple[int, int, int]]) -> tuple[Any, Any, Any]:
    return (
        np.array([h for h, _, _ in entries], dtype=np.uint64),
        np.array([o for _, o, _ in entries], dtype=np.int64),
        np.array([t for _, _, t in entries], dtype=np.int64),
    )


def _entries(columns: tuple[Any, Any, Any]) -> dict[int, tuple[int, int]]:
    hashes, offsets, tags = (column.tolist() for column in columns)
    assert hashes == sorted(set(hashes))  # distinct, in hash order (the cut record's order)
    return dict(zip(hashes, zip(offsets, tags, strict=True), strict=True))


@pytest.fixture(autouse=True)
def _tiny_levels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live_module, "MIN_DELTA", 3)


@settings(max_examples=300, deadline=None)
@given(st.lists(OPS, max_size=30))
def test_live_columns_equal_a_dict(ops: list[tuple[Any, ...]]) -> None:
    live, model = Live(), {}
    for op in ops:
        kind = op[0]
        if kind == "set":
            h, offset, tag = op[1]
            live[h] = model[h] = (offset, tag)
            continue  # no check here: the next operation meets the entry still in ``recent``
        elif kind == "add":  # distinct keys that are not live (what the fold guarantees)
            entries = list({h: (h, o, t) for h, o, t in op[1] if h not in model}.values())
            live.add(*_arrays(entries))
            model.update({h: (o, t) for h, o, t in entries})
        elif kind == "move":  # distinct live keys, each to a new offset (and tag if retag)
            entries = list({h: (h, o, t) for h, o, t in op[1] if h in model}.values())
            keys, offsets, tags = _arrays(entries)
            live.move(keys, offsets, tags if op[2] else None)
            model.update({h: (o, t if op[2] else model[h][1]) for h, o, t in entries})
        elif kind == "lowest":  # a restore, entry by entry
            live.lowest(*_arrays(op[1]))
            for h, o, t in op[1]:
                if h not in model or model[h][0] > o:
                    model[h] = (o, t)
        elif kind == "seal":
            gone = {h: e for h, e in model.items() if e[0] <= op[1]}
            assert _entries(live.drop(lambda columns, last=op[1]: columns[1] <= last)) == gone
            model = {h: e for h, e in model.items() if h not in gone}
        elif kind == "prune":
            dropped = len(live.drop(lambda columns, floor=op[1]: columns[2] < floor)[0])
            assert dropped == sum(tag < op[1] for _, tag in model.values())
            model = {h: e for h, e in model.items() if e[1] >= op[1]}
        else:
            recent = dict(live.recent)
            assert [recent.get(h) or e for h, e in zip(op[1], live.stored(op[1]), strict=True)] == [
                model.get(h) for h in op[1]
            ]
        assert dict(live.items()) == model
        last = max((o for o, _ in model.values()), default=0) // 2
        assert _entries(live.columns(last)) == {h: e for h, e in model.items() if e[0] <= last}
    assert len(live) == len(model)


def test_a_level_insert_keeps_the_level_dtypes() -> None:
    """Keys given as int64 go into the uint64 level as uint64 (a concatenation alone would make
    float64 of the two and lose the low bits of a hash above 2**53)."""
    big = 2**63 + 5
    level = (
        np.array([10, big], dtype=np.uint64),
        np.array([1, 2], dtype=np.int64),
        np.zeros(2, dtype=np.int64),
    )
    keys, offsets, tags = live_module._insert(
        level, np.array([3], dtype=np.int64), np.array([7]), np.array([1])
    )
    assert [c.dtype for c in (keys, offsets, tags)] == [np.uint64, np.int64, np.int64]
    assert keys.tolist() == [3, 10, big] and offsets.tolist() == [7, 1, 2] and tags.tolist() == [1, 0, 0]
