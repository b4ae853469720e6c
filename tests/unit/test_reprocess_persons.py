"""The reprocess job's steps on multi-id histories: final rows are per person, with links
from the window and from the warehouse's identities snapshot (earlier days), equal to the
independent reference (tests/reference.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, assume, given, settings

from eventpipe.loader.reprocess.rows import ASSIGNMENTS, ENGAGEMENT, EXPERIMENT
from tests import reference
from tests.support.histories import as_found, expected, identities_snapshot, job_lines, run_steps, split
from tests.support.identities import stitched_histories

# received from the day before the window (D-1 = 11-25) on: some links come only from the snapshot
EARLY = datetime(2026, 11, 24, tzinfo=UTC)


def resolver(visible: list[dict[str, Any]]) -> Any:
    linked = reference.links(reference.deduplicate(visible))

    def person(some_id: str) -> str:
        first = linked.get(some_id, some_id)
        return linked.get(first, first)

    return person


def persons_view(corrections: dict, snapshot: list[dict], person: Any) -> dict:
    """Assignments as a reader of the table sees them per person: snapshot rows and the
    job's rows, each id resolved to its person, earliest exposure wins."""
    assigned: dict = {}
    for r in (*snapshot, *corrections[ASSIGNMENTS]):
        key, value = (r["experiment_id"], person(r["user_key"])), (r["variant"], r["first_exposed_at"])
        if key not in assigned or (value[1], value[0]) < (assigned[key][1], assigned[key][0]):
            assigned[key] = value
    return assigned


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stitched_histories(start=EARLY, people=6))
def test_job_steps_count_persons_like_the_reference(history):
    window, visible, snapshot = split(history)
    old = visible[: len(visible) - len(window)]  # split() returns old + window
    # documented limit (docs/contracts.md §7): a link that arrives after the snapshot and
    # displaces the winning link of an id (same id, earlier timestamp) does not move the
    # assignments decided before the window (the snapshot keeps only their person)
    before, now = reference.links(reference.deduplicate(old)), reference.links(reference.deduplicate(visible))
    assume(all(now[i] == user for i, user in before.items()))
    out = run_steps(job_lines(window, snapshot, identities_snapshot(old)))
    want, got, person = expected(visible), as_found(out, snapshot), resolver(visible)
    assert got[ENGAGEMENT] == want[ENGAGEMENT]
    assert got[EXPERIMENT] == want[EXPERIMENT]
    assert all(person(r["user_key"]) == r["user_key"] for r in out[ASSIGNMENTS])  # keyed by person
    assert persons_view(out, snapshot, person) == want[ASSIGNMENTS]
