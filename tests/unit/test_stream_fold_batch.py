"""The batch fold (``PartitionState.fold_many``, what the pipeline runs per fetch) against
folding the same events one at a time, and the vectorised parts of the hashed sets against
their one-at-a-time forms.

The one-at-a-time fold is itself checked against the independent reference in
tests/unit/test_stream_fold.py; here the batch path must leave exactly the same deltas and
the same state, whatever the batch boundaries: duplicates inside one batch, cuts committed
(sealed) between batches, and a seek back that re-folds offsets the state already holds.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventpipe.stream import marks
from eventpipe.stream.fold import Deltas, PartitionState
from eventpipe.stream.marks import Marks, key_hash, mark_hash, user_mix
from tests.unit.test_stream_fold import commit, small_levels, split, streams


def snapshot(state: PartitionState) -> tuple[Any, ...]:
    return (
        state.live_ids,
        state.live_members,
        sorted(state.ids.pending.items()),
        state.ids.keys.tolist(),
        sorted(state.members.pending.items()),
        state.members.keys.tolist(),
        state.members.tags.tolist(),
        state.assigned,
        state.changed,
        state.n_assigned,
        state.high_received,
    )


def fold_in_batches(
    events: list[dict[str, Any]], bounds: set[int], cuts: set[int], back: int, batched: bool
) -> tuple[list[Deltas], list[list[bool]], PartitionState]:
    """Fold ``events`` in runs split at ``bounds``, committing the cut before each offset in
    ``cuts`` (at run starts), then seek back to ``back`` (not before the last commit) and fold
    the rest again; one ``fold_many`` per run if ``batched``, else ``apply`` per event."""
    state, out, fresh, log, first = PartitionState(), [Deltas()], [], [], 0
    n = len(events)
    starts = sorted({0, *(b for b in bounds if 0 < b < n)})
    runs = [(s, e) for s, e in zip(starts, [*starts[1:], n], strict=True)]
    for start, end in runs:
        if start in cuts and start > first:
            commit(state, first, start - 1, log)
            first = start
            out.append(Deltas())
        fresh.append(fold_run(state, events, start, end, out[-1], batched))
    again = Deltas()
    out.append(again)
    fresh.append(fold_run(state, events, max(back, first), n, again, batched))
    return out, fresh, state


def fold_run(
    state: PartitionState, events: list[dict[str, Any]], start: int, end: int, out: Deltas, batched: bool
) -> list[bool]:
    if batched:
        items = [(offset, state.extract(events[offset])) for offset in range(start, end)]
        return state.fold_many(items, out)
    return [state.apply(offset, events[offset], out) for offset in range(start, end)]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.sets(st.integers(0, 80)), st.sets(st.integers(0, 80)), st.integers(0, 80))
def test_folding_a_batch_equals_folding_its_events_one_by_one(
    events: list[dict[str, Any]], bounds: set[int], cuts: set[int], back: int
) -> None:
    with small_levels():  # sealed entries in both levels of the hashed sets
        for part in split(events).values():
            one_by_one = fold_in_batches(part, bounds, cuts, back, batched=False)
            batched = fold_in_batches(part, bounds, cuts, back, batched=True)
            assert batched[0] == one_by_one[0]  # the deltas of every cut and of the re-fold
            assert batched[1] == one_by_one[1]  # which events were duplicates
            assert snapshot(batched[2]) == snapshot(one_by_one[2])


def test_a_duplicate_inside_one_batch_counts_once() -> None:
    ts = "2026-11-25T10:00:00.000Z"
    event = {"type": "page", "messageId": "m", "anonymousId": "a", "timestamp": ts, "receivedAt": ts}
    state, out = PartitionState(), Deltas()
    items = [(offset, state.extract(event)) for offset in range(3)]
    assert state.fold_many(items, out) == [True, False, False]
    assert out.engagement == {
        ("2026-11-25", "page", "2026-11-25"): [1, 1],
        ("2026-11-25", "*", "2026-11-25"): [1, 1],
    }


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 50)), max_size=200),
    st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 50)), max_size=200),
    st.lists(st.integers(0, 2**64 - 1), max_size=50),
    st.integers(1, 40),
)
def test_vectorised_adds_and_lookups_equal_one_at_a_time(
    first: list[tuple[int, int]], second: list[tuple[int, int]], others: list[int], min_pending: int
) -> None:
    saved, marks.MIN_PENDING = marks.MIN_PENDING, min_pending  # both levels, many merges
    try:
        single, many = Marks(), Marks()
        for batch in (first, second):  # the second meets merged and pending entries of the first
            for h, tag in batch:
                single.add(h, tag)
            many.add_many([h for h, _ in batch], [tag for _, tag in batch])
        probe = [h for h, _ in first + second] + others
        assert many.contains_many(probe) == [h in single for h in probe]
        single.merge()
        many.merge()
        assert absolute(many) == absolute(single)
    finally:
        marks.MIN_PENDING = saved


def absolute(m: Marks) -> list[tuple[int, int]]:
    """The merged entries with their tags (stored relative to a base each set keeps)."""
    base = m._base or 0
    return list(zip(m.keys.tolist(), [t + base for t in m.tags.tolist()], strict=True))


def test_a_mark_hash_depends_on_which_side_is_the_user() -> None:
    row, user = key_hash("e\x1f2026-11-25\x1fpage"), key_hash("u")
    assert mark_hash(row, user) == row ^ user_mix(user)
    assert mark_hash(row, user) != mark_hash(user, row)
