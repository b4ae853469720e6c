"""Per-user rollup (pure): the unit of work of the nightly job's reducers.

Users are the natural shard: a user's assignment and conversions depend only on that
user's events, and Kafka partitions by user key. ``rollup_user`` turns one user's
deduplicated events (plus the assignments known from before) into that user's
contributions to each aggregate row; summing contributions over users gives the rows
(``event_count`` = sum, ``user_count`` = number of users contributing).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from eventpipe.definitions import (
    ANY_EVENT,
    EXPOSURE_EVENT,
    canonical_first,
    engagement_name,
    event_day,
    exposure_of,
)

EngagementKey = tuple[date, str]  # (day, event)
ExperimentKey = tuple[date, str, str, str]  # (day, experiment_id, variant, event)


@dataclass(frozen=True)
class Assignment:
    variant: str
    first_exposed_at: str  # ISO timestamp, as written by every stage


@dataclass
class UserRollup:
    assignments: dict[str, Assignment] = field(default_factory=dict)  # experiment -> assignment
    engagement: dict[EngagementKey, int] = field(default_factory=dict)  # row -> event count
    experiment: dict[ExperimentKey, int] = field(default_factory=dict)


def dedup(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One copy per messageId, chosen by ``canonical_first``; sorted by (timestamp, messageId)."""
    kept: dict[str, dict[str, Any]] = {}
    for event in events:
        mid = event["messageId"]
        kept[mid] = canonical_first(kept[mid], event) if mid in kept else event
    return sorted(kept.values(), key=lambda e: (e["timestamp"], e["messageId"]))


def assign(
    events: Iterable[dict[str, Any]], prior: Mapping[str, Assignment] | None = None
) -> dict[str, Assignment]:
    """Earliest exposure per experiment wins (ties: lowest variant, for determinism)."""
    best: dict[str, Assignment] = dict(prior or {})
    for event in events:
        exposure = exposure_of(event)
        if exposure is None:
            continue
        candidate = Assignment(exposure.variant, event["timestamp"])
        current = best.get(exposure.experiment_id)
        if current is None or (candidate.first_exposed_at, candidate.variant) < (
            current.first_exposed_at,
            current.variant,
        ):
            best[exposure.experiment_id] = candidate
    return best


def rollup_user(
    events: Iterable[dict[str, Any]],
    prior: Mapping[str, Assignment] | None = None,
    days: set[date] | None = None,
) -> UserRollup:
    """One user's contributions. ``events`` must be this user's deduplicated events;
    ``prior`` holds assignments from exposures outside ``events``; ``days`` limits which
    days' rows are produced (exposures outside them still decide assignments)."""
    events = list(events)
    out = UserRollup(assignments=assign(events, prior))
    for event in events:
        name = engagement_name(event)
        if name is None:
            continue
        day = event_day(event)
        if days is not None and day not in days:
            continue
        for row in ((day, name), (day, ANY_EVENT)):
            out.engagement[row] = out.engagement.get(row, 0) + 1
        exposure = exposure_of(event)
        for experiment_id, assignment in out.assignments.items():
            if event["timestamp"] < assignment.first_exposed_at:
                continue
            if name == EXPOSURE_EVENT and (exposure is None or exposure.experiment_id != experiment_id):
                continue  # exposures count only for their own experiment
            row_x = (day, experiment_id, assignment.variant, name)
            out.experiment[row_x] = out.experiment.get(row_x, 0) + 1
    return out
