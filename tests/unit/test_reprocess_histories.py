"""The reprocess job's steps against the independent reference truth (tests/reference.py)
on hypothesis-generated histories: shuffled, duplicated, late and clock-skewed.

The strategies and the in-process driver live in tests/support/histories.py (the integration
tests feed the same histories to the real job and warehouse); the inline-runner tests
cover mrjob's wiring.
"""

from __future__ import annotations

from collections import defaultdict

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eventpipe.loader.reprocess.rows import ASSIGNMENTS, ENGAGEMENT, EXPERIMENT
from eventpipe.loader.reprocess.steps import pack_event
from eventpipe.rollup import rollup_user
from tests import reference
from tests.support.histories import (
    DAY,
    as_found,
    expected,
    histories,
    job_lines,
    run_steps,
    split,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_job_steps_equal_the_reference_truth(history):
    window, visible, snapshot = split(history)
    assert as_found(run_steps(job_lines(window, snapshot)), snapshot) == expected(visible)


@settings(max_examples=100, deadline=None)
@given(histories(), st.randoms(use_true_random=False))
def test_arrival_order_and_retries_do_not_change_the_result(history, rnd):
    window, _, snapshot = split(history)
    lines = job_lines(window, snapshot)
    shuffled = lines + [lines[i] for i in range(0, len(lines), 3)]  # some lines read twice
    rnd.shuffle(shuffled)
    assert run_steps(shuffled) == run_steps(lines)


@settings(max_examples=100, deadline=None)
@given(histories())
def test_events_packed_before_the_job_give_the_same_rows(history):
    """Local inputs: the Packer packs each checked raw line with its lone-copy output
    (``steps.pack_event``), the first mapper passes them as they are: still the truth."""
    window, visible, snapshot = split(history)
    packed = [pack_event(line, orjson.loads(line), DAY) for line in job_lines(window, [])]
    lines = [*packed, *job_lines([], snapshot), *packed[::4]]  # some read twice
    assert as_found(run_steps(lines, checked=True), snapshot) == expected(visible)


@settings(max_examples=200, deadline=None)
@given(histories())
def test_rollup_user_sums_to_the_reference_over_whole_history(history):
    """No window, no snapshot: per-user rollups summed over users are the truth, every day."""
    truth = reference.truth(history)
    by_user = defaultdict(list)
    for event in reference.deduplicate(history):
        by_user[event.get("userId") or event["anonymousId"]].append(event)
    engagement: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    assignments = {}
    for user, events in by_user.items():
        rollup = rollup_user(events)
        for row, n in rollup.engagement.items():
            engagement[row][0] += n
            engagement[row][1] += 1
        assignments.update(
            {(x, user): (a.variant, a.first_exposed_at) for x, a in rollup.assignments.items()}
        )
    assert {k: tuple(v) for k, v in engagement.items()} == truth[ENGAGEMENT]
    assert assignments == truth[ASSIGNMENTS]


def test_prior_assignment_decides_the_variant_of_a_user_first_seen_before_the_window():
    snapshot = [
        {
            "experiment_id": "x",
            "user_key": "u1",
            "variant": "b",
            "first_exposed_at": "2026-11-01T00:00:00.000Z",
        }
    ]
    buy = {"type": "track", "event": "Buy", "messageId": "m1", "userId": "u1", "anonymousId": None,
           "timestamp": "2026-11-26T09:00:00.000Z", "receivedAt": "2026-11-26T09:00:00.100Z",
           "source": "dev"}  # fmt: skip
    late_exposure = {**buy, "messageId": "m2", "event": "Experiment Viewed",
                     "timestamp": "2026-11-25T09:00:00.000Z",
                     "properties": {"experiment_id": "x", "variation_id": "a"}}  # fmt: skip
    out = run_steps(job_lines([buy, late_exposure], snapshot))
    assert [(r["variant"], r["event"]) for r in out[EXPERIMENT]] == [("b", "Buy")]
    assert out[ASSIGNMENTS] == []  # the snapshot's earlier assignment stands
