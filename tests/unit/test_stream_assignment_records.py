"""The assignments a cut set go to the changelog as one record (``cutrecord.encode_assignments``,
key ``("s", first offset, chunk)``) instead of one record per assignment; records of that
earlier format (``("a", user, experiment)``) are still restored, and tombstoned once their
assignment changes or is pruned. Records are deleted in the order written, so whatever
compaction kept, a restore ends on the assignments the worker holds."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventpipe.stream import cutrecord
from eventpipe.stream.fold import Deltas, PartitionState
from eventpipe.stream.marks import day_tag
from eventpipe.timeutil import format_ts
from tests.unit.test_stream_assignments import event, exposure
from tests.unit.test_stream_fold import START, commit, restored

Log = list[tuple[Any, Any]]


def compacted(log: Log, *, drop_tombstones: bool) -> Log:
    """What a compacted topic keeps: the last record of each key, in the order written; a
    key whose last record is a tombstone keeps it (``drop_tombstones``: gone too, as after
    ``delete.retention.ms``)."""
    last = {orjson.dumps(key): i for i, (key, _) in enumerate(log)}
    kept = [(key, value) for i, (key, value) in enumerate(log) if last[orjson.dumps(key)] == i]
    return [(k, v) for k, v in kept if v is not None or not drop_tombstones]


def test_assignment_chunks_round_trip_and_refuse_damage() -> None:
    rows = [("u1", "x", "A", "2026-12-01T10:00:00.000Z", 3), ("ü2", "y", "B", "2026-12-01T11:00:00Z", 9)]
    (chunk,) = cutrecord.encode_assignments(rows)
    assert cutrecord.decode_assignments(chunk) == rows
    for damaged in (chunk[:-1], b"EPC3" + chunk[4:], chunk[:4] + b'[["u","x","A","t"]]', chunk[:4] + b"{}"):
        with pytest.raises(cutrecord.BadCutRecord):
            cutrecord.decode_assignments(damaged)


def test_large_cuts_split_into_chunks_under_the_record_limit() -> None:
    rows = [
        (f"user-{i}-" + "u" * 200, "experiment", "variant", "2026-12-01T10:00:00.000Z", i)
        for i in range(6000)
    ]
    chunks = cutrecord.encode_assignments(rows)
    assert len(chunks) > 1 and all(len(c) < 1_000_000 for c in chunks)
    assert [row for c in chunks for row in cutrecord.decode_assignments(c)] == rows


def halved(rows: list[Any], limit: int) -> list[bytes]:
    """The documented rule, the plain way: the whole list's JSON, halved at ``len // 2``
    while a part's JSON is over ``limit`` and holds more than one row."""
    body = orjson.dumps(rows)
    if len(body) <= limit or len(rows) == 1:
        return [cutrecord.ASSIGNMENTS_MAGIC + body]
    half = len(rows) // 2
    return halved(rows[:half], limit) + halved(rows[half:], limit)


@pytest.mark.parametrize("limit", [10, 60, 200, 1_000, 100_000])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 40])
def test_assignment_chunks_are_the_halved_json_byte_for_byte(
    monkeypatch: pytest.MonkeyPatch, limit: int, n: int
) -> None:
    rows: list[Any] = [
        (f"user-{i}" + "é" * (i % 5), "x", "A", "2026-12-01T10:00:00.000Z", i)
        if i % 3
        else (f"gone-{i}", "y")
        for i in range(n)
    ]
    monkeypatch.setattr(cutrecord, "CHUNK_BYTES", limit)
    assert cutrecord.encode_assignments(rows) == halved(rows, limit)


@pytest.mark.parametrize("n", [2, 3, 7, 40])
def test_assignment_chunks_split_exactly_at_the_limit(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """Limits at each part's JSON length and one byte under: a part exactly at the limit stays
    whole, one byte over is halved, as the plain rule does."""
    rows: list[Any] = [(f"u{i}" * (i % 4 + 1), "x", "A", "2026-12-01T10:00:00Z", i) for i in range(n)]
    lengths = {len(orjson.dumps(rows[a:b])) for a in range(n) for b in range(a + 1, n + 1)}
    for limit in sorted(lengths | {length - 1 for length in lengths}):
        monkeypatch.setattr(cutrecord, "CHUNK_BYTES", limit)
        assert cutrecord.encode_assignments(rows) == halved(rows, limit), limit


def test_changes_carry_their_assignment_or_are_written_as_gone() -> None:
    """A change whose user holds the experiment carries its entry; one whose user is gone, or
    holds other experiments only, is a bare ``[user, experiment]``."""
    state = PartitionState()
    state.assigned = {
        "u1": {"x": ("A", "2026-12-01T10:00:00.000Z", 3), "y": ("B", "2026-12-02T10:00:00Z", 5)}
    }
    state.changed = {("u1", "x"), ("u1", "z"), ("u2", "x")}
    records = state.cut_records(10, 20)
    (value,) = [v for key, v in records if key == ("s", "10", "0")]
    assert sorted(cutrecord.decode_assignments(value)) == [
        ("u1", "x", "A", "2026-12-01T10:00:00.000Z", 3),
        ("u1", "z"),
        ("u2", "x"),
    ]
    assert state.assignment_log.records == {10: (1, day_tag("2026-12-01"))}


def test_a_cut_writes_one_assignment_record() -> None:
    state, log = PartitionState(), []
    for n, user in enumerate(["u1", "u2", "u3"]):
        state.apply(n, exposure(n, 0, user, "A"), Deltas())
    commit(state, 0, 2, log)
    assert [key for key, _ in log if key[0] != "c"] == [("s", "0", "0")]
    assert state.changed == set()
    back = restored(log, 3)
    assert back.assigned == state.assigned and back.n_assigned == 3
    assert (
        back.assignment_log.records
        == state.assignment_log.records
        == {0: (1, day_tag(START.date().isoformat()))}
    )


def test_a_change_folded_while_its_cut_is_written_is_left_for_the_next_cut() -> None:
    """``written`` forgets the changes its records carry, and only those."""
    state = PartitionState()
    for n, user in enumerate(["u1", "u2"]):
        state.apply(n, exposure(n, 0, user, "A"), Deltas())
    records = state.cut_records(0, 1)
    state.apply(2, exposure(2, 0, "u3", "A"), Deltas())  # folded while the cut is written
    state.written(records)
    assert state.changed == {("u3", "x")}
    records = state.cut_records(2, 2)
    assert cutrecord.decode_assignments(dict(records)[("s", "2", "0")]) == [
        ("u3", "x", "A", format_ts(START), 2)
    ]
    state.written(records)
    assert state.changed == set()


def test_records_of_the_per_assignment_format_restore_and_are_tombstoned_when_they_change() -> None:
    ts = format_ts(START)
    old: Log = [
        (("a", "u1", "x"), orjson.dumps(["A", ts, 3])),
        (("a", "u2", "x"), orjson.dumps(["B", ts, 4])),
    ]
    state = restored(old, start=5)
    assert state.assigned == {"u1": {"x": ("A", ts, 3)}, "u2": {"x": ("B", ts, 4)}}
    state.apply(1, exposure(1, 0, "u1", "C"), Deltas())  # an earlier offset re-folded: replaces A
    log = list(old)
    commit(state, 5, 5, log)
    new = log[len(old) :]
    assert [key for key, _ in new if key[0] != "c"] == [("a", "u1", "x"), ("s", "5", "0")]
    assert dict(new)[("a", "u1", "x")] is None  # the tombstone comes before the record that sets it
    for kept in (log, compacted(log, drop_tombstones=False), compacted(log, drop_tombstones=True)):
        assert restored(kept, 6).assigned == state.assigned

    assert state.prune_assignments(day_tag(format_ts(START + timedelta(days=3))[:10])) == 2
    records = state.cut_records(6, 5)
    assert (("a", "u2", "x"), None) in records  # pruned: its old record is deleted too
    assert (("s", "5", "0"), None) in records  # and the record of u1's replacement
    state.written(records)
    log += records
    assert state.assignment_log.legacy == set() and state.assignment_log.expired == []
    for kept in (log, compacted(log, drop_tombstones=False), compacted(log, drop_tombstones=True)):
        back = restored(kept, 6)
        back.prune_assignments(day_tag(format_ts(START + timedelta(days=3))[:10]))
        assert back.assigned == state.assigned == {}


@st.composite
def histories(draw: Any) -> list[tuple[str, Any]]:
    """Exposures (users, experiments, days; offsets also re-folded lower, which replaces an
    assignment), cuts, and prunes at a growing horizon."""
    steps: list[tuple[str, Any]] = []
    offset = 10_000
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(["expose", "expose", "expose", "refold", "cut", "prune"]))
        if kind in ("expose", "refold"):
            offset = offset + 1 if kind == "expose" else draw(st.integers(0, offset))
            user, experiment = draw(st.sampled_from(["u1", "u2", "u3"])), draw(st.sampled_from(["x", "y"]))
            steps.append(
                ("expose", (offset, user, experiment, draw(st.sampled_from("ABC")), draw(st.integers(0, 30))))
            )
        else:
            steps.append((kind, None))
    return [*steps, ("cut", None)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.booleans())
def test_a_restore_from_any_compaction_ends_on_the_assignments_held(steps, drop_tombstones) -> None:
    state, log, horizon, cut_at = PartitionState(), [], 0, 0
    for kind, arg in steps:
        if kind == "expose":
            offset, user, experiment, variant, days = arg
            props = {"experiment_id": experiment, "variation_id": variant}
            exposed = event(offset, days, user, type="track", event="Experiment Viewed", properties=props)
            state.apply(offset, exposed, Deltas())
        elif kind == "prune":
            horizon += 5
            state.prune_assignments(horizon_tag(horizon))
        else:  # a restore prunes to the data clock's horizon at once: the worker's next prune does
            state.prune_assignments(horizon_tag(horizon))
            commit(state, cut_at, cut_at, log)
            cut_at += 1
            back = restored(compacted(log, drop_tombstones=drop_tombstones), 10**9)
            back.prune_assignments(horizon_tag(horizon))
            assert back.assigned == state.assigned


def horizon_tag(days: int) -> int:
    return day_tag(format_ts(START + timedelta(days=days))[:10])
