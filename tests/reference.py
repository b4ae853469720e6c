"""An independent, deliberately naive implementation of DESIGN.md's "Metrics semantics".

Tests compare the stream's fold, the nightly rollups and the warehouse against it. It
shares no code with ``eventpipe.rollup`` beyond reading the same event dicts.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import Any


def _user(e: dict[str, Any]) -> str:
    return e.get("userId") or e["anonymousId"]


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


def truth(events: list[dict[str, Any]]) -> dict[str, dict]:
    """``{"engagement_daily": {(day, event): (count, users)}, "experiment_daily":
    {(day, exp, variant, event): (count, users)}, "experiment_assignments":
    {(exp, user): (variant, first_exposed_at)}}``"""
    events = deduplicate(events)
    assignments: dict[tuple[str, str], tuple[str, str]] = {}
    for e in sorted(events, key=lambda e: e["timestamp"]):
        x = _exposure(e)
        if x is None:
            continue
        key = (x[0], _user(e))
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
        user = _user(e)
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
