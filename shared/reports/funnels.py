"""Funnels and retention cohorts (pure): what the user asked, checked, and the counts the
warehouse returns turned into the documented JSON shapes (docs/funnels.md).

Funnel: a person enters with their earliest first-step event whose day (UTC, corrected
timestamp) is in [from, to]; each next step is the person's earliest occurrence at or after
the previous step's matched time and at most ``within`` after the entry time.
With an experiment, a person counts under the variant of their first exposure to it (the
experiment reports' assignment), and only if that exposure is at or before their entry.

Retention: a person's cohort is the period (day, or ISO week from Monday) of their first
cohort event in [from, to]; ``returned[k-1]`` counts the persons with a return event in the
k-th period after their cohort's, among events up to ``to``: one number per period that has
begun by ``to`` (the classic triangle).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from eventpipe.reports.errors import ReportError
from eventpipe.reports.stats import VariantCounts, compare

PERIODS = ("day", "week")
_WITHIN = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_WITHIN = timedelta(days=366)


def parse_within(text: str) -> timedelta:
    """``"24h"``, ``"30m"``, ``"7d"``, ``"90s"`` -> a positive duration of at most a year."""
    found = _WITHIN.match(text)
    if not found:
        raise ReportError(f"--within: expected a number and a unit s, m, h or d (e.g. 24h), got {text!r}")
    within = timedelta(seconds=int(found.group(1)) * _UNIT_S[found.group(2)])
    if not timedelta(0) < within <= MAX_WITHIN:
        raise ReportError(f"--within must be more than 0 and at most 366d, got {text!r}")
    return within


def _check_days(first: date, last: date) -> None:
    if first > last:
        raise ReportError(f"--from {first} is after --to {last}")


def _check_name(option: str, name: str) -> str:
    if not name.strip():
        raise ReportError(f"{option}: an event name must not be empty")
    return name


@dataclass(frozen=True)
class FunnelQuery:
    steps: tuple[str, ...]
    first_day: date
    last_day: date
    within: timedelta = timedelta(hours=24)

    def __post_init__(self) -> None:
        if len(self.steps) < 2:
            raise ReportError(f"a funnel needs at least 2 --step, got {len(self.steps)}")
        for step in self.steps:
            _check_name("--step", step)
        repeated = sorted({s for s in self.steps if self.steps.count(s) > 1})
        if repeated:  # one event would match both steps: the funnel would mean nothing
            raise ReportError(f"--step: each step must be a different event; repeated: {', '.join(repeated)}")
        _check_days(self.first_day, self.last_day)
        if not timedelta(0) < self.within <= MAX_WITHIN:
            raise ReportError("--within must be more than 0 and at most 366d")


@dataclass(frozen=True)
class RetentionQuery:
    cohort_event: str
    return_event: str
    period: str
    first_day: date
    last_day: date

    def __post_init__(self) -> None:
        _check_name("--cohort-event", self.cohort_event)
        _check_name("--return-event", self.return_event)
        if self.period not in PERIODS:
            raise ReportError(f"--period must be day or week, got {self.period!r}")
        _check_days(self.first_day, self.last_day)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def funnel_steps(steps: Sequence[str], persons: Sequence[int]) -> list[dict[str, Any]]:
    """The JSON rows of one funnel: persons per step and both conversion rates (``None``
    where the denominator is 0)."""
    rows = []
    for n, (event, count) in enumerate(zip(steps, persons, strict=True)):
        rows.append(
            {
                "event": event,
                "persons": count,
                "rate_from_start": _rate(count, persons[0]),
                "rate_from_previous": _rate(count, persons[n - 1]) if n else _rate(count, count),
            }
        )
    return rows


def funnel_json(steps: Sequence[str], persons: Sequence[int]) -> dict[str, Any]:
    return {"steps": funnel_steps(steps, persons)}


def funnel_experiment_json(
    experiment: str, steps: Sequence[str], by_variant: Mapping[str, Sequence[int]], control: str = "control"
) -> dict[str, Any]:
    """Per variant the funnel, and its last step against control's: the two-proportion
    z-test of (persons at the last step) / (persons who entered), as experiment reports."""
    if control not in by_variant:
        known = ", ".join(sorted(by_variant)) or "none"
        raise ReportError(f"control variant {control!r} has nobody in this funnel (variants: {known})")
    base = by_variant[control]
    base_counts = VariantCounts(control, base[0], base[-1])
    variants = []
    for name in [control, *sorted(v for v in by_variant if v != control)]:
        persons = by_variant[name]
        row: dict[str, Any] = {"variant": name, "steps": funnel_steps(steps, persons)}
        if name == control:
            row["last_step"] = {"lift": None, "ci95": [None, None], "p_value": None}
        else:
            cmp = compare(base_counts, VariantCounts(name, persons[0], persons[-1]))
            row["last_step"] = {
                "lift": cmp.lift,
                "ci95": list(cmp.ci95) if cmp.ci95 else [None, None],
                "p_value": cmp.p_value,
            }
        variants.append(row)
    return {"experiment": experiment, "control": control, "variants": variants}


def period_start(day: date, period: str) -> date:
    return day - timedelta(days=day.weekday()) if period == "week" else day


def period_days(period: str) -> int:
    return 7 if period == "week" else 1


def periods_after(cohort: date, last_day: date, period: str) -> int:
    """How many periods after ``cohort`` have begun by ``last_day`` (the triangle's row length)."""
    return (period_start(last_day, period) - cohort).days // period_days(period)


def retention_json(
    query: RetentionQuery, sizes: Mapping[date, int], returned: Mapping[tuple[date, int], int]
) -> dict[str, Any]:
    """``sizes``: persons per cohort; ``returned``: (cohort, k) -> persons back in period k."""
    cohorts = []
    for cohort in sorted(sizes):
        length = periods_after(cohort, query.last_day, query.period)
        cohorts.append(
            {
                "cohort": cohort.isoformat(),
                "persons": sizes[cohort],
                "returned": [returned.get((cohort, k), 0) for k in range(1, length + 1)],
            }
        )
    return {"cohorts": cohorts}
