"""Issue 11 §1: events that arrive after a day was made final still reach its aggregates.

An analyst corrects day D while D+L has not ended (``cutoff_day`` in the future); events for
D keep arriving. Their event counts must be in the rows at once (the loader adds every
delta the final rows did not contain) and the day must be recomputed automatically at the
next nightly, after which user counts are exact too. Expected rows come from the events the
test sent (``tests/reference.py``), never from the warehouse.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from eventpipe.bootstrap import build_reprocess
from eventpipe.loader.reprocess.schedule import NightlyScheduler
from tests.support.archive import archive, stream_deltas
from tests.support.histories import DAY
from tests.support.loader import query
from tests.support.reprocess import (
    IN_ORDER,
    day_rows,
    dump,
    ev,
    exposure,
    load_events,
    load_stream,
    prepare,
    run_nightly,
    truth_rows,
    verify,
)

pytestmark = pytest.mark.integration
CUTOFF = DAY + timedelta(days=1)  # D+L with L = 1: "not ended yet" when the analyst runs


def received_on(event: dict[str, Any], day: date, at: str) -> dict[str, Any]:
    return {**event, "receivedAt": f"{day}T{at}.000Z"}


# day D events received on D+1 (inside the cutoff), after the correction ran: a returning
# user (u1), a new one (u4) whose conversion arrives before the exposure preceding it
LATE = [
    received_on(ev("m10", "u1", "20:00:00", "20:00:00"), CUTOFF, "09:00:00"),
    received_on(ev("m11", "u4", "21:00:00", "21:00:00", "Home"), CUTOFF, "09:00:01"),
    received_on(ev("m13", "u4", "22:00:00", "22:00:00"), CUTOFF, "09:00:02"),
    received_on(exposure("m12", "u4", "21:30:00", "21:30:00", "b"), CUTOFF, "09:00:03"),
]


def event_counts(rows: dict[str, dict]) -> dict[str, dict]:
    return {table: {k: n for k, (n, _) in found.items()} for table, found in rows.items()}


def touched(settings) -> list[tuple]:
    return query(
        settings,
        f"SELECT day, touched_at IS NOT NULL, touched_received_day FROM day_watermark WHERE day = '{DAY}'",
    )


def test_events_after_an_early_correction_are_counted_and_the_day_recomputed(s3, settings, pg_schema):
    states = prepare(settings, s3, IN_ORDER)
    load_events(settings, IN_ORDER)
    run_nightly(settings, DAY, lateness_days=1, runner="inline", registry=CollectorRegistry())
    assert query(settings, "SELECT is_final, cutoff_day FROM day_status") == [(True, CUTOFF)]
    assert touched(settings) == [(DAY, False, None)]

    archive(s3, settings, LATE, first_offset=100)
    load_stream(settings, stream_deltas(LATE, states, first_offset=100))
    load_events(settings, LATE)
    truth = truth_rows(IN_ORDER + LATE, DAY)
    rows = day_rows(dump(settings), DAY)
    # every engagement event counts at once (before the fix: the four were dropped)
    assert event_counts(rows)["engagement_daily"] == event_counts(truth)["engagement_daily"]
    # the stream folded u4's conversion before the exposure preceding it: its variant row
    # lacks that conversion until the nightly recomputes the day
    assert rows["experiment_daily"] != truth["experiment_daily"]
    assert touched(settings) == [(DAY, True, CUTOFF)]
    # and `eventpipe verify` sees the same: engagement exact, the experiment row not yet
    checked = verify(settings)
    assert checked.differing["engagement_daily"] == [] and checked.differing["experiment_daily"] != []

    # a replay of the same batches adds nothing (the ledger)
    load_stream(settings, stream_deltas(LATE, {}, first_offset=100))
    assert day_rows(dump(settings), DAY) == rows

    # the next nightly recomputes the touched day by itself; before that hour it does not
    settings = settings.model_copy(update={"reprocess_lookback_days": 1})
    after_touch = datetime.now(UTC)
    before_nightly = after_touch.replace(hour=settings.reprocess_hour_utc, minute=0, second=0, microsecond=0)
    if before_nightly <= after_touch:
        before_nightly += timedelta(days=1)
    nightly = before_nightly + timedelta(minutes=1)
    scheduler = NightlyScheduler(
        settings, registry=CollectorRegistry(), clock=lambda: nightly, adapters=build_reprocess(settings)
    )
    early = NightlyScheduler(
        settings,
        registry=CollectorRegistry(),
        clock=lambda: before_nightly - timedelta(minutes=1),
        adapters=build_reprocess(settings),
    )
    assert DAY not in early.due_days()
    assert (DAY, 1) in scheduler.due()
    results = scheduler.run_due()
    assert [r.day for r in results if r.day == DAY] == [DAY]
    assert day_rows(dump(settings), DAY) == truth  # variants and users exact again
    assert verify(settings).ok
    assert touched(settings) == [(DAY, False, None)]
    assert DAY not in scheduler.due_days()


def test_a_delta_received_after_the_window_stretches_the_recompute(s3, settings, pg_schema):
    states = prepare(settings, s3, IN_ORDER)
    run_nightly(settings, DAY, lateness_days=1, runner="inline", registry=CollectorRegistry())
    very_late = [received_on(ev("m20", "u2", "23:00:00", "23:00:00"), DAY + timedelta(days=3), "08:00:00")]
    archive(s3, settings, very_late, first_offset=200)
    load_stream(settings, stream_deltas(very_late, states, first_offset=200))
    truth = truth_rows(IN_ORDER + very_late, DAY)
    assert day_rows(dump(settings), DAY) == truth  # in-order, stream state intact: exact at once
    assert touched(settings) == [(DAY, True, DAY + timedelta(days=3))]
    scheduler = NightlyScheduler(settings, registry=CollectorRegistry(), adapters=build_reprocess(settings))
    assert (DAY, 3) in scheduler.due(datetime.now(UTC) + timedelta(days=1))
    run_nightly(settings, DAY, lateness_days=3, runner="inline", registry=CollectorRegistry())
    assert day_rows(dump(settings), DAY) == truth
    # the job read the late object: its batch is contained, so replaying it adds nothing
    assert touched(settings) == [(DAY, False, None)]
    load_stream(settings, stream_deltas(very_late, {}, first_offset=200))
    assert day_rows(dump(settings), DAY) == truth


def anon(event: dict[str, Any], anonymous_id: str) -> dict[str, Any]:
    return {**event, "userId": None, "anonymousId": anonymous_id}


BEFORE_LINK = [  # two ids on day D that are one person, which nobody knows yet
    anon(exposure("n1", "-", "08:00:00", "08:00:00", "b"), "a7"),
    anon(ev("n2", "-", "08:30:00", "08:30:00", "Home"), "a7"),
    ev("n3", "u7", "10:00:00", "10:00:00"),
]
LINK = received_on(  # the identify arrives two days later
    {**ev("n4", "u7", "12:00:00", "12:00:00"), "type": "identify", "event": None, "anonymousId": "a7",
     "timestamp": f"{DAY + timedelta(days=2)}T12:00:00.000Z"},
    DAY + timedelta(days=2), "12:00:00",
)  # fmt: skip


def test_a_link_landing_after_final_touches_the_day_and_the_nightly_stitches_it(s3, settings, pg_schema):
    prepare(settings, s3, BEFORE_LINK)
    load_events(settings, BEFORE_LINK)
    run_nightly(settings, DAY, lateness_days=1, runner="inline", registry=CollectorRegistry())
    assert day_rows(dump(settings), DAY) == truth_rows(BEFORE_LINK, DAY)
    assert touched(settings) == [(DAY, False, None)]

    archive(s3, settings, [LINK], first_offset=300)
    load_events(settings, [LINK])
    history = [*BEFORE_LINK, LINK]
    assert truth_rows(history, DAY) != truth_rows(BEFORE_LINK, DAY)  # the link changes D's users
    assert touched(settings) == [(DAY, True, None)]  # the snapshot carries the link: no stretch
    assert not verify(settings).ok  # D's final rows still count a7 and u7 apart

    settings = settings.model_copy(update={"reprocess_lookback_days": 1})
    scheduler = NightlyScheduler(
        settings,
        registry=CollectorRegistry(),
        clock=lambda: next_nightly(settings),
        adapters=build_reprocess(settings),
    )
    assert (DAY, 1) in scheduler.due()
    scheduler.run_due()
    assert day_rows(dump(settings), DAY) == truth_rows(history, DAY)
    assert verify(settings).ok and touched(settings) == [(DAY, False, None)]


def next_nightly(settings) -> datetime:
    now = datetime.now(UTC)
    at = now.replace(hour=settings.reprocess_hour_utc, minute=1, second=0, microsecond=0)
    return at if at > now else at + timedelta(days=1)
