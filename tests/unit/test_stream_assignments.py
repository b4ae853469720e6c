"""The stream's assignments are bounded by time: an assignment is forgotten (and its changelog
records deleted) ``assignment_window_days`` of data time after its first exposure, like
the messageIds and marks are after the dedup window; recent ones stay. Also: cut records
hashed before XXH3-64 (``EPC1``, ``EPC2``) give their data clock and no entries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from eventpipe.stream import cutrecord
from eventpipe.stream.fold import Deltas, PartitionState
from eventpipe.stream.marks import assignment_horizon, key_hash
from eventpipe.timeutil import format_ts
from tests.unit.test_stream_fold import START, commit, restored


def event(n: int, days: float, user: str, **kw: Any) -> dict[str, Any]:
    ts = format_ts(START + timedelta(days=days))
    return {
        "type": "page",
        "messageId": f"m{n}",
        "anonymousId": user,
        "timestamp": ts,
        "receivedAt": ts,
        **kw,
    }


def exposure(n: int, days: float, user: str, variant: str) -> dict[str, Any]:
    props = {"experiment_id": "x", "variation_id": variant}
    return event(n, days, user, type="track", event="Experiment Viewed", properties=props)


def test_an_assignment_is_forgotten_a_window_after_its_first_exposure_and_tombstoned() -> None:
    state, log = PartitionState(), []
    state.apply(0, exposure(0, 0, "old", "A"), Deltas())
    state.apply(1, exposure(1, 8, "new", "B"), Deltas())
    commit(state, 0, 1, log)
    out = Deltas()
    state.apply(2, event(2, 9, "old"), out)  # inside the window: counted under its variant
    assert [row[1:3] for row in out.experiment] == [("x", "A")]
    commit(state, 2, 2, log)

    assert state.prune_assignments(assignment_horizon(state.high_received, 5)) == 1
    assert state.assigned == {"new": {"x": ("B", exposure(1, 8, "new", "B")["timestamp"], 1)}}
    assert state.n_assigned == 1
    records = state.cut_records(3, 2)
    assert records == [(("s", "3", "0"), b'EPA1[["old","x"]]')]  # gone: a restore drops it
    commit(state, 3, 2, log)
    assert restored(log, 3).assigned == state.assigned
    # the record of cut 0 (it holds "new" too) stays, and the one after it that forgot "old"
    assert list(state.assignment_log.records) == [0, 3]
    state.prune_assignments(assignment_horizon(format_ts(START + timedelta(days=20)), 5))
    tombstones = state.cut_records(4, 3)
    assert [key for key, value in tombstones if value is None] == [("s", str(f), "0") for f in (0, 3)]

    out = Deltas()
    state.apply(3, event(3, 9.5, "old"), out)  # forgotten: no longer counted under A
    assert out.experiment == {}
    state.apply(4, exposure(4, 9.5, "old", "C"), out)  # exposed again: a new assignment
    assert out.assignments == {("old", "x"): ("C", exposure(4, 9.5, "old", "C")["timestamp"], 4)}


def test_a_restore_prunes_assignments_whose_tombstones_were_never_written() -> None:
    state, log = PartitionState(), []
    state.apply(0, exposure(0, 0, "old", "A"), Deltas())
    state.apply(1, event(1, 30, "other"), Deltas())
    commit(state, 0, 1, log)
    back = restored(log, 2)
    assert back.n_assigned == 1
    assert back.prune_assignments(assignment_horizon(back.high_received, 20)) == 1
    assert back.assigned == {} and back.changed == {("old", "x")}  # tombstoned with the next cut


def test_a_replaced_assignment_is_pruned_by_its_own_first_exposure() -> None:
    """A re-fold may replace an assignment by an earlier offset's exposure (another day):
    the index entry of the replaced one must not remove its successor."""
    state = PartitionState()
    state.apply(5, exposure(5, 10, "u", "B"), Deltas())  # folded first (state ran ahead)
    state.apply(1, exposure(1, 1, "u", "A"), Deltas())  # then offset 1, earlier: replaces it
    assert state.prune_assignments(assignment_horizon(format_ts(START + timedelta(days=11)), 5)) == 1
    assert state.assigned == {}
    state.apply(6, exposure(6, 12, "u", "C"), Deltas())
    assert state.prune_assignments(assignment_horizon(format_ts(START + timedelta(days=13)), 5)) == 0
    assert state.assigned["u"]["x"][0] == "C"


@pytest.mark.parametrize("magic", cutrecord.MAGICS_BEFORE_XXH3)
def test_cut_records_hashed_before_xxh3_give_their_data_clock_only(magic: bytes) -> None:
    ids, members = [(key_hash("m1"), 3, 7)], [(key_hash("old mark"), 3, 1)]
    chunk = cutrecord.encode("2026-12-01T10:00:00.000Z", cutrecord.columns(ids), cutrecord.columns(members))[
        0
    ]
    old = magic + chunk[len(cutrecord.MAGIC) :]
    assert cutrecord.decode(old) == ("2026-12-01T10:00:00.000Z", [], [])
    assert cutrecord.decode(chunk) == ("2026-12-01T10:00:00.000Z", ids, members)
    with pytest.raises(cutrecord.BadCutRecord):
        cutrecord.decode(old[:-1])  # damaged: refused as before
