"""The stream's aggregation fold against the independent reference (tests/reference.py).

Hypothesis generates in-order streams (timestamps increasing, receivedAt monotone) with
duplicates re-sent later, several experiments, conflicting exposures, anonymous and
identified users, page/screen/identify calls. The deltas of every partition and every
cut, summed, must equal the reference truth over raw ids exactly (the stream does not
stitch identities: docs/stream.md); a replay from a committed offset
with state that ran ahead (even partially persisted) must re-emit the same deltas.
"""

from __future__ import annotations

import copy
import zlib
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventpipe.stream.fold import Deltas, PartitionState
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
        assignments.update(d.assignments)
    return {
        "engagement_daily": {k: tuple(v) for k, v in eng.items()},
        "experiment_daily": {k: tuple(v) for k, v in exp.items()},
        "experiment_assignments": assignments,
    }


def fold_cuts(events: list[dict[str, Any]], cuts: set[int]) -> list[Deltas]:
    """Fold one partition's events, starting a new delta batch at each offset in ``cuts``."""
    state, out = PartitionState(), [Deltas()]
    for offset, event in enumerate(events):
        if offset in cuts:
            out.append(Deltas())
        state.apply(offset, event, out[-1])
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.sets(st.integers(0, 80)))
def test_summed_deltas_equal_the_reference(events: list[dict[str, Any]], cuts: set[int]) -> None:
    deltas = [d for part in split(events).values() for d in fold_cuts(part, cuts)]
    assert summed(deltas) == truth(events, stitch=False)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.data())
def test_replay_from_a_committed_offset_re_emits_the_same_deltas(events: list[dict[str, Any]], data) -> None:
    events = split(events)[data.draw(st.sampled_from(sorted(split(events))))]
    n = len(events)
    committed = data.draw(st.integers(0, n))  # last commit: the replay starts here
    ahead = data.draw(st.integers(committed, n))  # the state was persisted up to here
    state, before, first, replayed_from = PartitionState(), Deltas(), Deltas(), Deltas()
    snapshot = None
    for offset, event in enumerate(events):
        if offset == ahead:
            snapshot = copy.deepcopy(state)
        state.apply(offset, event, first if offset >= committed else before)
    snapshot = snapshot if snapshot is not None else copy.deepcopy(state)
    # the changelog may hold any subset of the entries created after the commit
    for key, _ in list(snapshot.drain()):
        created = snapshot.value_of(key)
        offset = created[0] if key[0] == "m" else created[2] if key[0] == "a" else created
        if offset >= committed and data.draw(st.booleans()):
            snapshot.restore(key, None)
    for offset in range(committed, n):
        snapshot.apply(offset, events[offset], replayed_from)
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
        ("x", "a"): ("A", events[1]["timestamp"]),
        ("y", "a"): ("B", events[2]["timestamp"]),
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
    state, out = PartitionState(), Deltas()
    ts = format_ts(START)
    event = {"type": "track", "event": "Experiment Viewed", "messageId": "m", "anonymousId": "a"}
    state.apply(
        0,
        {
            **event,
            "timestamp": ts,
            "receivedAt": ts,
            "properties": {"experiment_id": "x", "variation_id": "A"},
        },
        out,
    )
    restored = PartitionState()
    for key, value in state.drain():
        restored.restore(tuple(key), value)
    assert (restored.seen, restored.members, restored.assigned) == (state.seen, state.members, state.assigned)
    assert restored.size == state.size == 1 + 3 + 1
    later = format_ts(START + timedelta(days=3))
    assert restored.prune(later) == 1 + 3  # the assignment stays
    assert restored.size == 1
    assert {key[0] for key, value in restored.drain() if value is None} == {"m", "e", "x"}
