"""The nightly job on Spark (local mode) equals the mrjob engine's steps and the independent
reference (tests/reference.py) on the same generated histories: duplicates, clock skew,
late events, identity links. Few examples: a Spark job takes seconds, not milliseconds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, assume, given, seed, settings

from eventpipe.loader.reprocess.rows import ENGAGEMENT, EXPERIMENT, sort_rows
from eventpipe.settings import Settings
from tests import reference
from tests.support.histories import (
    DAY,
    as_found,
    expected,
    histories,
    identities_snapshot,
    job_lines,
    run_steps,
    split,
)
from tests.support.identities import stitched_histories
from tests.support.reprocess import DAYS, assert_days_equal_the_truth, prepare, reprocess_days
from tests.support.spark import local_spark, run_spark_lines
from tests.support.warehouse import fresh_example

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def spark() -> Iterator[Settings]:
    yield from local_spark()


FEW = settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FEW
@seed(17)
@given(history=histories(max_events=60))
def test_spark_rows_equal_the_mrjob_steps_and_the_reference(spark, history):
    window, visible, snapshot = split(history)
    lines = job_lines(window, snapshot)
    found = run_spark_lines(spark, DAY, lines)
    assert as_found(found, snapshot) == expected(visible)
    assert found == sorted_steps(lines)


@FEW
@seed(18)
@given(history=stitched_histories(people=6))
def test_spark_counts_persons_like_mrjob_and_the_reference(spark, history):
    window, visible, snapshot = split(history)
    old = visible[: len(visible) - len(window)]
    before, now = reference.links(reference.deduplicate(old)), reference.links(reference.deduplicate(visible))
    assume(all(now[i] == user for i, user in before.items()))  # the documented limit (contracts §7)
    lines = job_lines(window, snapshot, identities_snapshot(old))
    found = run_spark_lines(spark, DAY, lines)
    want, got = expected(visible), as_found(found, snapshot)
    assert got[ENGAGEMENT] == want[ENGAGEMENT]
    assert got[EXPERIMENT] == want[EXPERIMENT]
    assert found == sorted_steps(lines)


def test_lines_read_twice_and_blank_lines_change_nothing(spark):
    history = [
        {"type": "track", "event": "Buy", "messageId": f"m{i}", "userId": f"u{i % 3}", "anonymousId": None,
         "timestamp": f"2026-11-26T0{i}:00:00.000Z", "receivedAt": f"2026-11-26T0{i}:00:01.000Z",
         "source": "dev", "properties": {}}
        for i in range(6)
    ]  # fmt: skip
    lines = job_lines(history, [])
    once = run_spark_lines(spark, DAY, lines)
    assert once == run_spark_lines(spark, DAY, [*lines, b"", *lines[::2]], files=3)
    assert once[ENGAGEMENT] == [
        {"day": "2026-11-26", "event": "*", "event_count": 6, "user_count": 3},
        {"day": "2026-11-26", "event": "Buy", "event_count": 6, "user_count": 3},
    ]


def sorted_steps(lines: list[bytes]) -> dict:
    """mrjob's five steps in-process (the unit tests' driver), rows in the engines' order."""
    return {table: sort_rows(table, rows) for table, rows in run_steps(lines).items()}


ONE = settings(max_examples=1, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@ONE
@seed(19)
@given(history=histories(max_events=60, max_lag_minutes=1439))
def test_eventpipe_reprocess_with_spark_makes_every_day_equal_the_truth(
    spark, s3, settings, pg_schema, history
):
    """The whole nightly (inputs from S3, the day replacement in PostgreSQL) with ``--engine spark``."""
    example = fresh_example(settings, pg_schema)
    prepare(example, s3, history)
    once = reprocess_days(example, DAYS, engine="spark")
    assert_days_equal_the_truth(once, history, DAYS)
