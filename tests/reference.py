"""An independent, deliberately naive implementation of DESIGN.md's "Metrics semantics".

Tests compare the stream's fold, the nightly rollups and the warehouse against it. It
shares no code with ``eventpipe.rollup`` or ``eventpipe.identity`` beyond reading the same
event dicts.

Persons (identity stitching, docs/contracts.md section 7): every id's earliest link
(identify with both ids: anonymousId -> userId; alias: previousId -> userId; ordered by
timestamp, then messageId) is followed twice. ``truth(events, stitch=False)`` counts raw
ids (userId, else anonymousId): what the stream can promise when a person's ids sit on
different partitions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import date
from typing import Any


def _user(e: dict[str, Any]) -> str:
    return e.get("userId") or e["anonymousId"]


def links(events: list[dict[str, Any]]) -> dict[str, str]:
    """id -> userId of its earliest link, over deduplicated ``events``."""
    candidates: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for e in events:
        if e["type"] == "identify":
            source = e.get("anonymousId")
        elif e["type"] == "alias":
            source = e.get("previousId")
        else:
            continue
        if e.get("userId") and source and source != e["userId"]:
            candidates[source].append((e["timestamp"], e["messageId"], e["userId"]))
    return {source: min(found)[2] for source, found in candidates.items()}


def persons(events: list[dict[str, Any]]) -> Callable[[dict[str, Any]], str]:
    """The person of an event: its raw id, followed along at most two links."""
    linked = links(events)

    def person(e: dict[str, Any]) -> str:
        first = linked.get(_user(e), _user(e))
        return linked.get(first, first)

    return person


def _name(e: dict[str, Any]) -> str | None:
    return {"track": e.get("event"), "page": "page", "screen": "screen"}.get(e["type"])


def _exposure(e: dict[str, Any]) -> tuple[str, str] | None:
    if e["type"] != "track" or e.get("event") != "Experiment Viewed":
        return None
    p = e.get("properties") or {}
    exp = p.get("experiment_id") or p.get("experiment_name")
    var = p.get("variation_id") or p.get("variation_name")
    return (str(exp), str(var)) if exp not in (None, "") and var not in (None, "") else None


def deduplicate(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        by_id[e["messageId"]].append(e)
    return [min(copies, key=lambda e: (e["receivedAt"], e["timestamp"])) for copies in by_id.values()]


def truth(events: list[dict[str, Any]], stitch: bool = True) -> dict[str, dict]:
    """``{"engagement_daily": {(day, event): (count, users)}, "experiment_daily":
    {(day, exp, variant, event): (count, users)}, "experiment_assignments":
    {(exp, person): (variant, first_exposed_at)}}``; persons unless ``stitch`` is False."""
    events = deduplicate(events)
    who = persons(events) if stitch else _user
    assignments: dict[tuple[str, str], tuple[str, str]] = {}
    for e in sorted(events, key=lambda e: e["timestamp"]):
        x = _exposure(e)
        if x is None:
            continue
        key = (x[0], who(e))
        if key not in assignments or (e["timestamp"], x[1]) < (assignments[key][1], assignments[key][0]):
            assignments[key] = (x[1], e["timestamp"])

    eng_count: dict[tuple, int] = defaultdict(int)
    eng_users: dict[tuple, set] = defaultdict(set)
    exp_count: dict[tuple, int] = defaultdict(int)
    exp_users: dict[tuple, set] = defaultdict(set)
    for e in events:
        name = _name(e)
        if name is None:
            continue
        day = date.fromisoformat(e["timestamp"][:10])
        user = who(e)
        for row in ((day, name), (day, "*")):
            eng_count[row] += 1
            eng_users[row].add(user)
        x = _exposure(e)
        for (exp, u), (variant, first) in assignments.items():
            if u != user or e["timestamp"] < first:
                continue
            if name == "Experiment Viewed" and (x is None or x[0] != exp):
                continue
            row = (day, exp, variant, name)
            exp_count[row] += 1
            exp_users[row].add(user)
    return {
        "engagement_daily": {k: (eng_count[k], len(eng_users[k])) for k in eng_count},
        "experiment_daily": {k: (exp_count[k], len(exp_users[k])) for k in exp_count},
        "experiment_assignments": assignments,
    }
