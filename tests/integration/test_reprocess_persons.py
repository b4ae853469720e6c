"""The nightly reprocess on multi-id histories, end to end on the real S3 API server and
PostgreSQL: the history is archived, streamed (raw ids) and loaded into ``events`` (which
derives ``identities``); every day is reprocessed with the inline runner; final rows and
``experiment_assignments`` then count persons exactly like the independent reference."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from eventpipe.bootstrap import build_warehouse
from eventpipe.loader.batches import batch_from_rows
from eventpipe.loader.load import load_group
from tests.support.identities import stitched_histories
from tests.support.reprocess import assert_days_equal_the_truth, prepare, reprocess_days
from tests.support.warehouse import fresh_example

pytestmark = pytest.mark.integration
START = datetime(2026, 11, 24, tzinfo=UTC)
DAYS = [date(2026, 11, 24) + timedelta(days=n) for n in range(4)]


def load_events(settings: Any, history: list[dict[str, Any]]) -> None:
    wh = build_warehouse(settings)
    try:
        batch = batch_from_rows(settings.s3_prefix + "raw/events/all.jsonl.gz", "events", history)
        wh.run(lambda conn: load_group(conn, wh.dialect, wh.schema, "events", [batch]))
    finally:
        wh.close()


@settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck))
@given(history=stitched_histories(start=START, people=8))
def test_final_rows_and_assignments_count_persons(s3, settings, pg_schema, history):
    example = fresh_example(settings, pg_schema)
    prepare(example, s3, history)
    load_events(example, history)
    once = reprocess_days(example, DAYS)
    assert_days_equal_the_truth(once, history, DAYS)
