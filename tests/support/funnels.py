"""An independent reference for funnels and retention cohorts, and histories to try them on.

Naive on purpose: per person, the events sorted by time and walked in Python, with the
persons and the assignments of ``tests.reference`` (which shares no code with
``eventpipe.identity``); nothing here reads the SQL of ``eventpipe.reports.funnelsql``.
Timestamps are the normalised ISO strings (``...Z`` with milliseconds), which sort as time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from tests import reference

FUNNEL = ("page", "Product Viewed", "Order Completed")


def _at(e: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00"))


def _name(e: dict[str, Any]) -> str | None:
    if e["type"] == "track":
        return e.get("event")
    return e["type"] if e["type"] in ("page", "screen") else None


def _by_person(events: list[dict[str, Any]]) -> dict[str, list[tuple[datetime, str]]]:
    """person -> [(time, engagement name)], time-sorted, from deduplicated events."""
    kept = reference.deduplicate(events)
    person = reference.persons(kept)
    out: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for e in kept:
        name = _name(e)
        if name is not None:
            out[person(e)].append((_at(e), name))
    return {p: sorted(timeline) for p, timeline in out.items()}


def _reached(timeline: list[tuple[datetime, str]], steps: Sequence[str], first: date, last: date,
             within: timedelta) -> tuple[datetime, int] | None:  # fmt: skip
    """(entry time, steps reached) of one person, or None if they never entered."""
    entries = [at for at, name in timeline if name == steps[0] and first <= at.date() <= last]
    if not entries:
        return None
    entry = min(entries)
    matched, reached = entry, 1
    for step in steps[1:]:
        later = [at for at, name in timeline if name == step and matched <= at <= entry + within]
        if not later:
            break
        matched, reached = min(later), reached + 1
    return entry, reached


def funnel(events: list[dict[str, Any]], steps: Sequence[str], first: date, last: date,
           within: timedelta) -> list[int]:  # fmt: skip
    """Persons at each step."""
    counts = [0] * len(steps)
    for timeline in _by_person(events).values():
        found = _reached(timeline, steps, first, last, within)
        for n in range(found[1] if found else 0):
            counts[n] += 1
    return counts


def funnel_by_variant(events: list[dict[str, Any]], experiment: str, steps: Sequence[str], first: date,
                      last: date, within: timedelta) -> dict[str, list[int]]:  # fmt: skip
    """variant -> persons at each step, for persons first exposed at or before their entry."""
    assigned = {
        who: (variant, datetime.fromisoformat(at.replace("Z", "+00:00")))
        for (exp, who), (variant, at) in reference.truth(events)["experiment_assignments"].items()
        if exp == experiment
    }
    out: dict[str, list[int]] = {}
    for who, timeline in _by_person(events).items():
        found = _reached(timeline, steps, first, last, within)
        if found is None or who not in assigned or assigned[who][1] > found[0]:
            continue
        counts = out.setdefault(assigned[who][0], [0] * len(steps))
        for n in range(found[1]):
            counts[n] += 1
    return out


def _period(day: date, period: str) -> date:
    return day - timedelta(days=day.weekday()) if period == "week" else day


def retention(events: list[dict[str, Any]], cohort_event: str, return_event: str, period: str, first: date,
              last: date) -> dict[str, Any]:  # fmt: skip
    """The documented JSON: cohorts, their sizes and who came back each period after."""
    step = 7 if period == "week" else 1
    sizes: dict[date, int] = defaultdict(int)
    back: dict[tuple[date, int], int] = defaultdict(int)
    for timeline in _by_person(events).values():
        in_range = [(at, name) for at, name in timeline if first <= at.date() <= last]
        starts = [at for at, name in in_range if name == cohort_event]
        if not starts:
            continue
        cohort = _period(min(starts).date(), period)
        sizes[cohort] += 1
        returns = {_period(at.date(), period) for at, name in in_range if name == return_event}
        for p in returns:
            if p > cohort:
                back[(cohort, (p - cohort).days // step)] += 1
    cohorts = []
    for cohort in sorted(sizes):
        length = (_period(last, period) - cohort).days // step
        cohorts.append({"cohort": cohort.isoformat(), "persons": sizes[cohort],
                        "returned": [back[(cohort, k)] for k in range(1, length + 1)]})  # fmt: skip
    return {"cohorts": cohorts}
