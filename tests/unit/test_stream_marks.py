"""The stream's compact state parts: hashed sets with time tags (marks.py) and the packed
changelog record of a cut (cutrecord.py)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventpipe.stream import cutrecord, marks
from eventpipe.stream.marks import Marks, day_tag, hour_tag, key_hash


def test_key_hash_is_stable_across_processes() -> None:
    # the changelog stores these hashes: they must never depend on the process (unlike hash())
    # XXH3-64 of the UTF-8 text, seed 0: the published value for the empty input, and a
    # value pinned when the format became EPC3 (a library upgrade must not change it)
    assert key_hash("") == 0x2D06800538D394C2
    assert key_hash("message-1") == 6275039372390241568
    assert key_hash("message-1") != key_hash("message-2")


def test_tags_count_hours_and_days_since_the_epoch() -> None:
    assert day_tag("1970-01-02") == 1
    assert hour_tag("1970-01-02T03") == 27
    assert hour_tag("2026-12-01T00") == day_tag("2026-12-01") * 24


@settings(max_examples=400, deadline=None)
@given(
    # hashes from a few small ones too: keys met again, older or newer
    st.lists(st.tuples(st.integers(0, 15) | st.integers(0, 2**64 - 1), st.integers(0, 50)), max_size=300),
    st.lists(st.integers(0, 2**64 - 1), max_size=50),
    st.integers(0, 51),
    st.integers(1, 40),
    st.integers(1, 30),
)
def test_marks_hold_exactly_what_was_added_and_prune_by_tag(
    added: list[tuple[int, int]], others: list[int], horizon: int, min_pending: int, batch: int
) -> None:
    saved, marks.MIN_PENDING = marks.MIN_PENDING, min_pending  # both levels, many merges
    try:
        m = Marks()
        newest: dict[int, int] = {}
        for start in range(0, len(added), batch):  # unsorted batches, keys met twice in one
            part = added[start : start + batch]
            if batch == 1:
                m.add(*part[0])
            else:
                m.add_many([h for h, _ in part], [tag for _, tag in part])
            for h, tag in part:
                newest[h] = max(tag, newest.get(h, -1))
        assert len(m) == len(newest)
        assert all(h in m for h in newest)
        assert not any(h in m for h in others if h not in newest)
        dropped = m.prune(horizon)
        kept = {h for h, tag in newest.items() if tag >= horizon}
        assert dropped == len(newest) - len(kept) and len(m) == len(kept)
        assert {h for h in newest if h in m} == kept
        m.merge()
        assert {h for h in newest if h in m} == kept
    finally:
        marks.MIN_PENDING = saved


def test_a_cut_record_round_trips_in_chunks_under_a_megabyte(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [(key_hash(f"m{i}"), 1000 + i, 500_000 + i % 3) for i in range(70_000)]
    members = [(key_hash(f"u{i}"), 1000 + i, 20_000) for i in range(5)]
    chunks = cutrecord.encode("2026-12-01T10:00:00.000Z", cutrecord.columns(ids), cutrecord.columns(members))
    assert len(chunks) == 3 and max(len(c) for c in chunks) < 1_000_000
    decoded = [cutrecord.decode(c) for c in chunks]
    assert {high for high, _, _ in decoded} == {"2026-12-01T10:00:00.000Z"}
    assert [e for _, i, _ in decoded for e in i] == ids
    assert [e for _, _, m in decoded for e in m] == members


def test_a_cut_record_has_the_documented_layout_byte_for_byte() -> None:
    """The chunk bytes as the module docstring lays them out, packed value by value: a
    change of how ``encode`` copies the columns must not change a byte of the record."""
    ids = [(2**64 - 1 - i, 7 + i, 500_000 + i) for i in range(3)]
    members = [(i * 2**40, 9 + i, 20_000 - i) for i in range(2)]
    high = "2026-12-01T10:00:00.000Zü"
    (chunk,) = cutrecord.encode(high, cutrecord.columns(ids), cutrecord.columns(members))
    rows = ids + members
    expected = struct.pack("<4sIIH", b"EPC3", 3, 2, len(high.encode())) + high.encode()
    expected += b"".join(struct.pack("<Q", h) for h, _, _ in rows)
    expected += b"".join(struct.pack("<q", o) for _, o, _ in rows)
    expected += b"".join(struct.pack("<I", t) for _, _, t in rows)
    assert chunk == expected


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"EPC1",
        b"XXXX" + bytes(10),
        cutrecord.encode("", cutrecord.columns([(1, 2, 3)]), cutrecord.columns([]))[0][:-1],
    ],
)
def test_a_damaged_cut_record_is_refused_clearly(value: bytes) -> None:
    with pytest.raises(cutrecord.BadCutRecord):
        cutrecord.decode(value)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 2**64 - 1), max_size=60, unique=True),
    st.lists(st.integers(0, 2**64 - 1), max_size=60, unique=True),
)
def test_inserting_sorted_keys_is_numpys_insert(old: list[int], new: list[int]) -> None:
    # the seal's insert of sorted keys with their tags, positions found once for both columns
    keys = np.array(sorted(old), dtype=np.uint64)
    tags = np.arange(len(keys), dtype=np.int64) * 3
    fresh = np.array(sorted(set(new) - set(old)), dtype=np.uint64)
    fresh_tags = np.arange(len(fresh), dtype=np.int64) * 5 + 1
    at = keys.searchsorted(fresh)
    got_keys, got_tags = marks._insert((keys, tags), at, (fresh, fresh_tags))
    assert got_keys.dtype == np.uint64 and got_tags.dtype == np.int64
    assert got_keys.tolist() == np.insert(keys, at, fresh).tolist() == sorted(set(old) | set(new))
    assert got_tags.tolist() == np.insert(tags, at, fresh_tags).tolist()


def _bitmap(keys: list[int], shift: int, size: int) -> bytes:
    bits = bytearray(size)
    for h in keys:
        slot = h >> shift
        bits[slot >> 3] |= 1 << (slot & 7)
    return bytes(bits)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 15) | st.integers(0, 2**64 - 1), st.integers(0, 50)), max_size=40),
        max_size=12,
    ),
    st.lists(st.integers(0, 51) | st.none(), max_size=12),
    st.integers(1, 30),
)
def test_each_add_leaves_the_levels_and_the_bitmap_as_the_pending_rule_says(
    batches: list[list[tuple[int, int]]], horizons: list[int | None], min_pending: int
) -> None:
    """The layout itself, not only membership: after each ``add_many`` the pending level holds
    the new hashes not merged yet unless that makes it larger than its limit, then everything is
    merged; the bitmap has exactly the merged hashes' bits, its size set at the last rebuild.
    ``add_many`` takes a shortcut when it is likely to merge: its arrays must be the same."""
    saved, marks.MIN_PENDING = marks.MIN_PENDING, min_pending
    try:
        m = Marks()
        merged: dict[int, int] = {}
        pending: dict[int, int] = {}
        log2 = 6
        for batch, horizon in zip(batches, [*horizons, *[None] * len(batches)], strict=False):
            m.add_many([h for h, _ in batch], [tag for _, tag in batch])
            for h, tag in batch:
                level = merged if h in merged else pending
                level[h] = max(tag, level.get(h, -1))
            if len(pending) > max(min_pending, len(merged) // marks.PENDING_FRACTION):
                merged |= pending
                pending = {}
                if len(merged) * marks.BITS_PER_ENTRY > 1 << log2:
                    log2 = max(6, (len(merged) * marks.BITS_PER_ENTRY).bit_length())
            if horizon is not None:
                m.prune(horizon)
                pending = {h: t for h, t in pending.items() if t >= horizon}
                kept = {h: t for h, t in merged.items() if t >= horizon}
                if len(kept) < len(merged):
                    log2 = max(6, (len(kept) * marks.BITS_PER_ENTRY).bit_length())
                merged = kept
            assert m.pending == pending
            base = m._base or 0
            assert (
                dict(zip(m.keys.tolist(), (m.tags.astype(np.int64) + base).tolist(), strict=True)) == merged
            )
            assert m.keys.tolist() == sorted(merged) and m.pending_keys.tolist() == sorted(pending)
            assert m._shift == 64 - log2
            assert bytes(m._bits) == _bitmap(list(merged), 64 - log2, 1 << (log2 - 3))
    finally:
        marks.MIN_PENDING = saved
