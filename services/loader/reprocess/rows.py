"""Pure helpers around ``eventpipe.rollup`` that the job's steps and the day replacement share.

Nothing here decides what counts (``eventpipe.definitions`` / ``eventpipe.rollup`` do);
these functions only route events to the rollup and shape its results into the row
shapes of docs/contracts.md §3 (``corrections/``, without ``received_day``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, timedelta
from typing import Any

from eventpipe.definitions import engagement_name, event_day, exposure_of
from eventpipe.rollup import Assignment, UserRollup

ENGAGEMENT = "engagement_daily"
EXPERIMENT = "experiment_daily"
ASSIGNMENTS = "experiment_assignments"
TABLES = (ENGAGEMENT, EXPERIMENT, ASSIGNMENTS)
DAILY_TABLES = (ENGAGEMENT, EXPERIMENT)
# the dimension columns of each table, in primary-key order
DIMENSIONS = {
    ENGAGEMENT: ("day", "event"),
    EXPERIMENT: ("day", "experiment_id", "variant", "event"),
    ASSIGNMENTS: ("experiment_id", "user_key"),
}
# big fields no definition reads: dropped after dedup so the user shuffle stays small
_UNREAD_FIELDS = ("context", "traits", "integrations")

Counts = tuple[int, int]  # (event_count, user_count)
RowKey = tuple[str, ...]


def window(day: date, lateness_days: int) -> list[date]:
    """Received dates the job reads for ``day``: D-1 (clients ahead of the server) … D+L."""
    return [day + timedelta(days=n) for n in range(-1, lateness_days + 1)]


def matters_for(event: dict[str, Any], day: date) -> bool:
    """Whether a deduplicated event can change ``day``'s rows: an engagement event on the
    day, or an exposure before it (it may decide the user's assignment)."""
    if engagement_name(event) is None:
        return False
    happened = event_day(event)
    return happened == day or (happened < day and exposure_of(event) is not None)


def slim(event: dict[str, Any]) -> dict[str, Any]:
    # a copy less three keys, not a comprehension over every key: ~4x faster, same key order
    slimmed = event.copy()
    for field in _UNREAD_FIELDS:
        slimmed.pop(field, None)
    return slimmed


def is_new_assignment(current: Assignment, prior: Assignment | None, day: date) -> bool:
    """Assignments the job reports: decided by an exposure up to ``day`` and not already
    the snapshot's (later exposures are the later days' business)."""
    return current != prior and date.fromisoformat(current.first_exposed_at[:10]) <= day


def user_contributions(
    user: str, rollup: UserRollup, prior: Mapping[str, Assignment], day: date
) -> Iterable[tuple[list[str], list[Any]]]:
    """One user's rollup as (row key, value) pairs: daily rows get ``[events, 1 user]``."""
    for (d, name), n in rollup.engagement.items():
        yield [ENGAGEMENT, d.isoformat(), name], [n, 1]
    for (d, experiment, variant, name), n in rollup.experiment.items():
        yield [EXPERIMENT, d.isoformat(), experiment, variant, name], [n, 1]
    for experiment, assignment in rollup.assignments.items():
        if is_new_assignment(assignment, prior.get(experiment), day):
            yield [ASSIGNMENTS, experiment, user], [assignment.variant, assignment.first_exposed_at]


def to_row(key: list[str], value: list[Any]) -> dict[str, Any]:
    """A final row (contracts §3 shape) from a step-3 key and its summed value."""
    table, *dims = key
    row: dict[str, Any] = dict(zip(DIMENSIONS[table], dims, strict=True))
    if table == ASSIGNMENTS:
        row["variant"], row["first_exposed_at"] = value
    else:
        row["event_count"], row["user_count"] = value
    return row


def row_key(table: str, row: Mapping[str, Any]) -> RowKey:
    return tuple(str(row[c]) for c in DIMENSIONS[table])


def daily_counts(table: str, rows: Iterable[Mapping[str, Any]]) -> dict[RowKey, Counts]:
    return {row_key(table, r): (int(r["event_count"]), int(r["user_count"])) for r in rows}


def add_counts(a: Mapping[RowKey, Counts], b: Mapping[RowKey, Counts]) -> dict[RowKey, Counts]:
    """Row-wise sum (final rows + late deltas, contracts §6)."""
    out = dict(a)
    for key, (n, u) in b.items():
        n0, u0 = out.get(key, (0, 0))
        out[key] = (n0 + n, u0 + u)
    return out


def sort_rows(table: str, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Deterministic order, so the same day always gives byte-identical correction objects."""
    return sorted(rows, key=lambda r: row_key(table, r))
