"""The stream's aggregation fold against the independent reference (tests/reference.py).

Hypothesis generates in-order streams (timestamps increasing, receivedAt monotone) with
duplicates re-sent later, several experiments, conflicting exposures, anonymous and
identified users, page/screen/identify calls. The deltas of every partition and every
cut, summed, must equal the reference truth over raw ids exactly (the stream does not
stitch identities: docs/stream.md); a replay from a committed offset
with state that ran ahead (even partially persisted) must re-emit the same deltas.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventpipe.stream import live, marks
from eventpipe.stream.fold import Deltas, PartitionState
from eventpipe.stream.marks import day_tag, hour_tag
from eventpipe.timeutil import format_ts
from tests.reference import truth

START = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)
USERS = [("anon-1", None), ("anon-2", "user-2"), ("anon-3", None), ("anon-4", "user-4"), ("anon-5", None)]
EXPERIMENTS = ["exp-a", "exp-b", "exp-c"]
VARIANTS = ["control", "v1", "v2"]
NAMES = ["Product Viewed", "Order Completed", "Experiment Viewed"]


@st.composite
def message(draw: Any) -> dict[str, Any]:
    anon, uid = draw(st.sampled_from(USERS))
    kind = draw(st.sampled_from(["track", "track", "track", "page", "screen", "identify"]))
    event: dict[str, Any] = {"type": kind, "anonymousId": anon, "userId": draw(st.sampled_from([None, uid]))}
    if kind == "track":
        name = draw(st.sampled_from(NAMES))
        event["event"] = name
        if name == "Experiment Viewed":
            style = draw(st.sampled_from(["ids", "names", "missing"]))
            exp, var = draw(st.sampled_from(EXPERIMENTS)), draw(st.sampled_from(VARIANTS))
            props = {
                "ids": {"experiment_id": exp, "variation_id": var},
                "names": {"experiment_name": exp, "variation_name": var},
                "missing": {"experiment_id": exp},
            }[style]
            event["properties"] = props
    elif kind in ("page", "screen"):
        event["name"] = "Home"
    return event


@st.composite
def streams(draw: Any) -> list[dict[str, Any]]:
    """In-order events; some re-sent later as duplicates (same messageId, later receivedAt)."""
    msgs = draw(st.lists(message(), min_size=1, max_size=60))
    clock = START
    out: list[dict[str, Any]] = []
    for n, msg in enumerate(msgs):
        clock += timedelta(milliseconds=draw(st.integers(1, 4 * 3600 * 1000)))
        ts = format_ts(clock)
        event = {**msg, "messageId": f"m{n}", "timestamp": ts, "receivedAt": ts}
        out.append(event)
        if out and draw(st.integers(0, 9)) == 0:  # an SDK retry of an earlier message
            again = dict(draw(st.sampled_from(out)))
            again["receivedAt"] = ts
            out.append(again)
    return out


@contextmanager
def small_levels():
    """Merge the compact sets' pending level after every 2 entries, and the live columns'
    small level into the large one past 2, so folds meet every level."""
    saved = marks.MIN_PENDING, live.MIN_DELTA
    marks.MIN_PENDING = live.MIN_DELTA = 2
    try:
        yield
    finally:
        marks.MIN_PENDING, live.MIN_DELTA = saved


def partition_of(event: dict[str, Any], partitions: int = 3) -> int:
    return zlib.crc32((event.get("userId") or event["anonymousId"]).encode()) % partitions


def split(events: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    parts: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        parts[partition_of(event)].append(event)
    return parts


def summed(deltas: list[Deltas]) -> dict[str, dict]:
    eng: dict = defaultdict(lambda: [0, 0])
    exp: dict = defaultdict(lambda: [0, 0])
    assignments: dict = {}
    for d in deltas:
        for (day, name, _), (n, u) in d.engagement.items():
            eng[(date.fromisoformat(day), name)][0] += n
            eng[(date.fromisoformat(day), name)][1] += u
        for (day, x, v, name, _), (n, u) in d.experiment.items():
            exp[(date.fromisoformat(day), x, v, name)][0] += n
            exp[(date.fromisoformat(day), x, v, name)][1] += u
        assignments.update({(x, user): (v, t) for (user, x), (v, t, _) in d.assignments.items()})
    return {
        "engagement_daily": {k: tuple(v) for k, v in eng.items()},
        "experiment_daily": {k: tuple(v) for k, v in exp.items()},
        "experiment_assignments": assignments,
    }


def commit(state: PartitionState, first: int, last: int, log: list[tuple[Any, Any]]) -> None:
    """What the writer does for a cut: changelog records, then (committed) seal."""
    records = state.cut_records(first, last)
    state.written(records)
    log.extend(records)
    state.seal(last)


def restored(log: list[tuple[Any, Any]], start: int) -> PartitionState:
    state = PartitionState()
    for key, value in log:
        state.restore(tuple(orjson.loads(orjson.dumps(key))), value, start)
    return state


def fold_cuts(events: list[dict[str, Any]], cuts: set[int], restarts: set[int]) -> list[Deltas]:
    """Fold one partition's events, committing a cut (its entries sealed) at each offset in
    ``cuts``; at those in ``restarts`` the state is rebuilt from the changelog written so far."""
    state, out, log, first = PartitionState(), [Deltas()], [], 0
    for offset, event in enumerate(events):
        if offset in cuts | restarts and offset > first:
            commit(state, first, offset - 1, log)
            first = offset
            out.append(Deltas())
            if offset in restarts:
                state = restored(log, offset)
        state.apply(offset, event, out[-1])
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.sets(st.integers(0, 80)), st.sets(st.integers(0, 80)))
def test_summed_deltas_equal_the_reference(
    events: list[dict[str, Any]], cuts: set[int], restarts: set[int]
) -> None:
    with small_levels():
        deltas = [d for part in split(events).values() for d in fold_cuts(part, cuts, restarts)]
    assert summed(deltas) == truth(events, stitch=False)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.data())
def test_replay_from_a_committed_offset_re_emits_the_same_deltas(events: list[dict[str, Any]], data) -> None:
    """The first run commits up to ``committed``, then writes changelog records for cuts it
    never commits (any subset of them reached the broker) and crashes, or seeks back in memory."""
    events = split(events)[data.draw(st.sampled_from(sorted(split(events))))]
    n = len(events)
    committed = data.draw(st.integers(0, n))  # last commit: the replay starts here
    state, before, first, replayed_from, log = PartitionState(), Deltas(), Deltas(), Deltas(), []
    with small_levels():
        for offset, event in enumerate(events):
            if offset == committed and offset:
                commit(state, 0, offset - 1, log)
            state.apply(offset, event, first if offset >= committed else before)
            if offset >= committed:  # an uncommitted cut per event; its record may have landed
                records = state.cut_records(offset, offset)
                log.extend(r for r in records if data.draw(st.booleans()))
        in_memory = data.draw(st.booleans())
        replaying = state if in_memory else restored(log, committed)
        for offset in range(committed, n):
            replaying.apply(offset, events[offset], replayed_from)
    assert replayed_from == first


def test_exposures_count_only_for_their_own_experiment_and_from_first_exposure_on() -> None:
    def ev(n: int, minute: int, **kw: Any) -> dict[str, Any]:
        ts = format_ts(START + timedelta(minutes=minute))
        return {"messageId": f"m{n}", "anonymousId": "a", "timestamp": ts, "receivedAt": ts, **kw}

    expose = {"type": "track", "event": "Experiment Viewed"}
    events = [
        ev(0, 0, type="track", event="Order Completed"),  # before any exposure: no experiment row
        ev(1, 1, **expose, properties={"experiment_id": "x", "variation_id": "A"}),
        ev(2, 2, **expose, properties={"experiment_id": "y", "variation_id": "B"}),
        ev(3, 3, **expose, properties={"experiment_id": "x", "variation_id": "C"}),  # does not move x
        ev(4, 4, type="page"),
        ev(4, 4, type="page"),  # duplicate
    ]
    out = Deltas()
    state = PartitionState()
    for offset, event in enumerate(events):
        state.apply(offset, event, out)
    day = "2026-11-25"
    assert out.assignments == {
        ("a", "x"): ("A", events[1]["timestamp"], 1),
        ("a", "y"): ("B", events[2]["timestamp"], 2),
    }
    assert out.experiment == {
        (day, "x", "A", "Experiment Viewed", day): [2, 1],
        (day, "y", "B", "Experiment Viewed", day): [1, 1],
        (day, "x", "A", "page", day): [1, 1],
        (day, "y", "B", "page", day): [1, 1],
    }
    assert out.engagement[(day, "*", day)] == [5, 1]
    assert summed([out]) == truth(events, stitch=False)


def test_state_survives_its_changelog_round_trip_and_prunes_old_entries() -> None:
    state, out, log = PartitionState(), Deltas(), []
    ts = format_ts(START)
    event = {"type": "track", "event": "Experiment Viewed", "messageId": "m", "anonymousId": "a"}
    exposure = {**event, "timestamp": ts, "receivedAt": ts}
    state.apply(0, {**exposure, "properties": {"experiment_id": "x", "variation_id": "A"}}, out)
    commit(state, 0, 0, log)
    assert [key[0] for key, _ in log] == ["c", "s"]  # one cut record, one of the assignments
    back = restored(log, 1)
    assert back.size == state.size == 1 + 3 + 1  # messageId, 3 marks ("*", the event, x), assignment
    assert (back.live_ids, back.live_members) == ({}, {})  # all before offset 1: sealed
    assert not back.apply(1, exposure, Deltas())  # the messageId is still known: a duplicate
    assert back.records == state.records == {0: (1, hour_tag(ts[:13]), day_tag(ts[:10]))}

    later = format_ts(START + timedelta(days=3))
    assert back.prune(later) == 1 + 3  # the assignment stays
    assert back.size == 1
    tombstones = back.cut_records(5, 4)  # nothing live: only the queued tombstone
    assert tombstones == [(("c", "0", "0"), None)]
    back.written(tombstones)
    assert back.expired == [] and back.cut_records(5, 4) == []
    assert restored([*log, *tombstones], 1).size == 1 + 3 + 1  # tombstones: pruned, not undone


def test_the_per_key_changelog_of_earlier_versions_is_restored() -> None:
    ts = format_ts(START)
    old = [
        (["m", "m1"], orjson.dumps([3, ts])),
        (["e", ts[:10], "page", "u"], orjson.dumps(3)),
        (["a", "u", "x"], orjson.dumps(["A", ts, 3])),
        (["m", "m2"], orjson.dumps([9, ts])),
    ]
    state = restored(old, start=5)
    assert (len(state.ids), len(state.members), state.n_assigned) == (1, 1, 1)
    assert list(state.live_ids.values()) == [(9, hour_tag(ts[:13]))]  # after the start: live
    again = {"type": "page", "messageId": "m3", "anonymousId": "u", "timestamp": ts, "receivedAt": ts}
    out = Deltas()
    state.apply(5, again, out)
    assert out.engagement[(ts[:10], "page", ts[:10])] == [1, 0]  # u already counted on that day
