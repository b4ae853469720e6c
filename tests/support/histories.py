"""Hypothesis histories of shuffled, duplicated, late and clock-skewed events, and the
reprocess job's steps run in-process on them (a tiny map/shuffle/reduce driver serialised
through the job's own protocol, as Hadoop would). The unit tests judge the steps with them;
the integration tests feed the same histories to the real job and warehouse."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from hypothesis import strategies as st

from eventpipe.loader.reprocess.job import OrjsonProtocol, ReprocessJob
from eventpipe.loader.reprocess.packed import read_packed
from eventpipe.loader.reprocess.rows import ASSIGNMENTS, ENGAGEMENT, EXPERIMENT
from eventpipe.loader.reprocess.steps import merge_partials
from eventpipe.timeutil import format_ts
from tests import reference

DAY = date(2026, 11, 26)
LATENESS = 1
MIDNIGHT = datetime(2026, 11, 26, tzinfo=UTC)
USERS = [("u1", None), ("u2", "a2"), (None, "a3"), (None, "a4"), ("u5", None)]
NAMES = ["Buy", "View", "Experiment Viewed"]


@st.composite
def histories(
    draw: Callable[..., Any], max_events: int = 40, max_lag_minutes: int = 3 * 1440
) -> list[dict[str, Any]]:
    """Normalised events around DAY (in arrival order after a shuffle), with retried copies
    (same messageId and timestamp, received later) and clocks up to 6 h ahead of receipt;
    ``max_lag_minutes`` bounds how late an event arrives."""
    n = draw(st.integers(1, max_events))
    events = []
    for i in range(n):
        user_id, anonymous_id = draw(st.sampled_from(USERS))
        kind = draw(st.sampled_from(["track", "track", "track", "page", "screen", "identify"]))
        at = MIDNIGHT + timedelta(minutes=draw(st.integers(-3 * 1440, 2 * 1440)))
        at += timedelta(milliseconds=draw(st.integers(0, 999)))
        lag = timedelta(minutes=draw(st.integers(-360, max_lag_minutes)))  # negative: clock ahead
        event: dict[str, Any] = {
            "type": kind, "messageId": f"m{i}", "userId": user_id, "anonymousId": anonymous_id,
            "timestamp": format_ts(at), "receivedAt": format_ts(at + lag), "source": "dev",
            "context": {"ip": "10.0.0.1"}, "properties": {},
        }  # fmt: skip
        if kind == "track":
            event["event"] = draw(st.sampled_from(NAMES))
            if event["event"] == "Experiment Viewed":
                experiment, variant = draw(st.sampled_from("xy")), draw(st.sampled_from(["a", "b", ""]))
                ids = draw(st.booleans())  # ids, else the name fallbacks
                event["properties"] = {
                    "experiment_id" if ids else "experiment_name": experiment,
                    "variation_id" if ids else "variation_name": variant,
                }
        events.append(event)
        for _ in range(draw(st.integers(0, 2)) if draw(st.integers(0, 4)) == 0 else 0):
            retry = timedelta(minutes=draw(st.integers(0, 2 * 1440)))
            events.append({**event, "receivedAt": format_ts(at + lag + retry)})
    return draw(st.permutations(events))


def received_day(event: dict[str, Any]) -> date:
    return date.fromisoformat(event["receivedAt"][:10])


def split(history: list[dict[str, Any]]) -> tuple[list[dict], list[dict], list[dict[str, Any]]]:
    """(events the job reads, events it can see overall, the warehouse snapshot before DAY):
    the snapshot is the truth's assignments over what was received before the window."""
    first, cutoff = DAY - timedelta(days=1), DAY + timedelta(days=LATENESS)
    window = [e for e in history if first <= received_day(e) <= cutoff]
    old = [e for e in history if received_day(e) < first]
    snapshot = [
        {"experiment_id": x, "user_key": u, "variant": v, "first_exposed_at": at}
        for (x, u), (v, at) in reference.truth(old)["experiment_assignments"].items()
        if at < format_ts(MIDNIGHT)
    ]
    return window, old + window, snapshot


def expected(visible: list[dict[str, Any]]) -> dict[str, dict]:
    truth = reference.truth(visible)
    return {
        ENGAGEMENT: {(d.isoformat(), e): c for (d, e), c in truth[ENGAGEMENT].items() if d == DAY},
        EXPERIMENT: {(d.isoformat(), *rest): c for (d, *rest), c in truth[EXPERIMENT].items() if d == DAY},
        ASSIGNMENTS: {k: v for k, v in truth[ASSIGNMENTS].items() if v[1][:10] <= DAY.isoformat()},
    }


def as_found(corrections: dict[str, list[dict]], snapshot: list[dict[str, Any]]) -> dict[str, dict]:
    """The job's rows keyed like ``expected``; assignments upserted onto the snapshot."""
    assigned = {(r["experiment_id"], r["user_key"]): (r["variant"], r["first_exposed_at"]) for r in snapshot}
    for r in corrections[ASSIGNMENTS]:
        key, value = (r["experiment_id"], r["user_key"]), (r["variant"], r["first_exposed_at"])
        if key not in assigned or (value[1], value[0]) < (assigned[key][1], assigned[key][0]):
            assigned[key] = value
    return {
        ENGAGEMENT: {
            (r["day"], r["event"]): (r["event_count"], r["user_count"]) for r in corrections[ENGAGEMENT]
        },
        EXPERIMENT: {
            (r["day"], r["experiment_id"], r["variant"], r["event"]): (r["event_count"], r["user_count"])
            for r in corrections[EXPERIMENT]
        },
        ASSIGNMENTS: assigned,
    }


def _shuffle_reduce(reducer: Callable[..., Iterable], pairs: Iterable[tuple[Any, Any]]) -> list[tuple]:
    protocol, groups = OrjsonProtocol(), defaultdict(list)
    for key, value in pairs:
        k, v = protocol.read(protocol.write(key, value))
        groups[orjson.dumps(k)].append(v)
    out = []
    for raw in sorted(groups):
        out.extend(reducer(orjson.loads(raw), iter(groups[raw])))
    return out


def run_steps(
    lines: list[bytes], day: date = DAY, tasks: int = 2, checked: bool = False
) -> dict[str, list[dict]]:
    """The job's steps, in-process (mapper -> shuffle -> reducer, x4); step 4 runs as
    ``tasks`` reducer tasks (persons dealt round-robin), whose partial rows are merged.
    ``checked``: as with local inputs (``--checked-inputs``: lines packed by the ``Packer``
    pass the first mapper as they are)."""
    job = ReprocessJob(["--day", day.isoformat(), *(["--checked-inputs"] if checked else [])])
    packed: dict[bytes, list] = defaultdict(list)  # the first shuffle: packed lines by key
    for line in lines:
        for _, packed_line in job.map_by_message(None, line):
            key, value = read_packed(packed_line)
            packed[orjson.dumps(key)].append(value)
    protocol = OrjsonProtocol()  # the first reducer's output as mrjob writes and reads it
    ids = [
        protocol.read(protocol.write(*pair))
        for raw in sorted(packed)
        for pair in job.reduce_copies(orjson.loads(raw), iter(packed[raw]))
    ]
    persons = _shuffle_reduce(job.reduce_second_hop, _shuffle_reduce(job.reduce_first_hop, ids))
    groups: dict[str, list] = defaultdict(list)
    for person, value in persons:
        groups[orjson.dumps(person).decode()].append((person, value))
    partials = []
    for task in range(tasks):
        job.start_rows()
        mine = [pair for i, key in enumerate(sorted(groups)) if i % tasks == task for pair in groups[key]]
        partials.extend(_shuffle_reduce(job.reduce_user, mine))
        partials.extend(job.partial_rows())
    return merge_partials(partials)


def job_lines(window: list[dict], snapshot: list[dict], identities: list[dict] = ()) -> list[bytes]:
    return [orjson.dumps(r) for r in (*window, *snapshot, *identities)]


def identities_snapshot(old: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The warehouse's ``identities`` rows after loading ``old``: canonical link copies."""
    rows = []
    for e in reference.deduplicate(old):
        source = e.get("anonymousId") if e["type"] == "identify" else e.get("previousId")
        if e["type"] in ("identify", "alias") and e.get("userId") and source and source != e["userId"]:
            rows.append({"anonymous_id": source, "user_id": e["userId"], "linked_at": e["timestamp"],
                         "message_id": e["messageId"]})  # fmt: skip
    return rows
