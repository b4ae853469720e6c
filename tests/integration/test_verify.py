"""``eventpipe verify`` against the real PostgreSQL: a correct day passes, a tampered one
fails naming each tampered row with both values; the loader's gauge follows.

Expected values come from the events the test sent (``tests/reference.py``), never from
the warehouse's rows: the check must be able to fail.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg2
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from prometheus_client import CollectorRegistry

from eventpipe import cli
from eventpipe.bootstrap import build_reprocess, warehouse_factory
from eventpipe.loader.reprocess.schedule import NightlyScheduler
from eventpipe.loader.verify_loop import DayVerifier, verify_and_export
from eventpipe.settings import get_settings
from tests import reference
from tests.support.histories import DAY, histories
from tests.support.reprocess import (
    DAYS,
    day_rows,
    dump,
    ev,
    exposure,
    load_events,
    prepare,
    run_nightly,
    truth_rows,
    verify,
)

pytestmark = pytest.mark.integration
NEXT = DAY + timedelta(days=1)


def on(day: date, event: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v.replace(str(DAY), str(day)) if k in ("timestamp", "receivedAt") else v for k, v in event.items()
    }


HISTORY = [
    exposure("m1", "u1", "08:00:00", "08:00:00", "a"),
    ev("m2", "u1", "09:00:00", "09:00:00"),
    ev("m3", "u2", "09:30:00", "09:30:00", "Home"),
    ev("m3", "u2", "09:30:00", "09:31:00", "Home"),  # a retried copy counts once
    exposure("m4", "u2", "10:00:00", "10:00:00", "b"),
    ev("m5", "u2", "11:00:00", "11:00:00"),
    {**ev("m6", "u3", "12:00:00", "12:00:00"), "type": "page", "event": None, "name": "Pricing"},
    {**ev("m7", "u3", "12:30:00", "12:30:00"), "type": "identify", "event": None},  # not engagement
    {
        **exposure("m8", "u1", "13:00:00", "13:00:00", "c"),
        "properties": {"experiment_id": "y", "variation_id": 7},
    },
    {**ev("m9", "u4", "14:00:00", "14:00:00", "Experiment Viewed"), "properties": {"experiment_id": "x"}},
    on(NEXT, ev("m10", "u1", "08:00:00", "08:00:00")),  # another day
]


def execute(settings, statement: str, *params: Any) -> None:
    with psycopg2.connect(settings.warehouse_dsn) as conn, conn.cursor() as cur:
        cur.execute(f'SET search_path TO "{settings.warehouse_schema}"')
        cur.execute(statement, params)
    conn.close()


def truth(table: str) -> dict:
    return reference.truth(HISTORY)[table]


def test_streamed_and_final_days_pass(s3, settings, pg_schema):
    prepare(settings, s3, HISTORY)
    load_events(settings, HISTORY)
    streamed = verify(settings)
    assert (streamed.day_state, streamed.ok) == ("provisional", True), streamed.as_dict()
    assert verify(settings, NEXT).ok
    run_nightly(settings, DAY, lateness_days=1, runner="inline", registry=CollectorRegistry())
    final = verify(settings)
    assert (final.day_state, final.ok) == ("final", True), final.as_dict()
    # the reference has rows on the day, so "no difference" is not "nothing compared"
    assert len([k for k in truth("experiment_daily") if k[0] == DAY]) >= 4


def test_tampered_rows_are_each_reported_with_both_values(s3, settings, pg_schema, monkeypatch):
    prepare(settings, s3, HISTORY)
    load_events(settings, HISTORY)
    run_nightly(settings, DAY, lateness_days=1, runner="inline", registry=CollectorRegistry())
    buy, home = truth("engagement_daily")[(DAY, "Buy")], truth("engagement_daily")[(DAY, "Home")]
    x_b_buy = truth("experiment_daily")[(DAY, "x", "b", "Buy")]
    variant, first = truth("experiment_assignments")[("x", "u1")]
    execute(
        settings,
        "UPDATE engagement_daily SET event_count = event_count + 1 WHERE day = %s AND event = 'Buy'",
        DAY,
    )
    execute(settings, "DELETE FROM engagement_daily WHERE day = %s AND event = 'Home'", DAY)
    execute(settings, "INSERT INTO engagement_daily VALUES (%s, '[bold]Ghost', 4, 2, true)", DAY)
    execute(
        settings,
        "UPDATE experiment_daily SET user_count = 9 WHERE day = %s AND variant = 'b' AND event = 'Buy'",
        DAY,
    )
    execute(
        settings,
        "UPDATE experiment_assignments SET variant = 'z' WHERE experiment_id = 'x' AND user_key = 'u1'",
    )

    result = verify(settings)
    assert not result.ok
    found = {
        t: {tuple(r.key.values()): (r.stored, r.expected) for r in rows}
        for t, rows in result.differing.items()
    }
    counts = lambda n, u: {"event_count": n, "user_count": u}  # noqa: E731
    assert found["engagement_daily"] == {
        ("Buy",): (counts(buy[0] + 1, buy[1]), counts(*buy)),
        ("Home",): (None, counts(*home)),
        ("[bold]Ghost",): (counts(4, 2), None),
    }
    assert found["experiment_daily"] == {("x", "b", "Buy"): (counts(x_b_buy[0], 9), counts(*x_b_buy))}
    assignment = {"variant": variant, "first_exposed_at": first}
    assert found["experiment_assignments"] == {("x", "u1"): ({**assignment, "variant": "z"}, assignment)}

    # the command: exit 1 and the same rows in JSON; exit 0 on an untouched day
    monkeypatch.setenv("EVENTPIPE_WAREHOUSE_DSN", settings.warehouse_dsn)
    monkeypatch.setenv("EVENTPIPE_WAREHOUSE_SCHEMA", settings.warehouse_schema)
    get_settings.cache_clear()
    try:
        assert cli.main(["verify", "--date", str(DAY), "--format", "json"]) == 1
        assert cli.main(["verify", "--date", str(NEXT), "--format", "json"]) == 0
    finally:
        get_settings.cache_clear()

    registry = CollectorRegistry()
    verify_and_export(settings, DAY, registry, warehouse=warehouse_factory(settings))
    sample = registry.get_sample_value
    assert sample("eventpipe_verify_rows_differing", {"table": "engagement_daily", "day_state": "final"}) == 3
    assert sample("eventpipe_verify_rows_differing", {"table": "experiment_daily", "day_state": "final"}) == 1


def test_the_command_prints_json_with_both_sides(s3, settings, pg_schema, monkeypatch, capsys):
    prepare(settings, s3, HISTORY)
    load_events(settings, HISTORY)
    execute(settings, "DELETE FROM experiment_daily WHERE day = %s AND variant = 'a' AND event = 'Buy'", DAY)
    monkeypatch.setenv("EVENTPIPE_WAREHOUSE_DSN", settings.warehouse_dsn)
    monkeypatch.setenv("EVENTPIPE_WAREHOUSE_SCHEMA", settings.warehouse_schema)
    get_settings.cache_clear()
    try:
        assert cli.main(["verify", "--date", str(DAY), "--format", "json"]) == 1
    finally:
        get_settings.cache_clear()
    out = json.loads(capsys.readouterr().out)
    n, u = truth("experiment_daily")[(DAY, "x", "a", "Buy")]
    assert out["day_state"] == "provisional" and out["ok"] is False
    assert out["tables"]["experiment_daily"]["rows"] == [
        {"key": {"experiment_id": "x", "variant": "a", "event": "Buy"}, "stored": None,
         "expected": {"event_count": n, "user_count": u}}
    ]  # fmt: skip
    assert out["tables"]["engagement_daily"]["rows_differing"] == 0


def test_the_loader_verifies_today_on_its_interval(s3, settings, pg_schema):
    prepare(settings, s3, HISTORY)
    load_events(settings, HISTORY)
    execute(settings, "UPDATE engagement_daily SET event_count = 0 WHERE day = %s", DAY)
    registry = CollectorRegistry()
    verifier = DayVerifier(
        settings,
        registry=registry,
        clock=lambda: _midday(DAY),
        confirm_after_s=0.2,
        warehouse=warehouse_factory(settings),
    )
    assert verifier.tick() is True
    verifier.join(timeout=60)
    assert verifier.tick() is False  # not again before the interval
    rows = registry.get_sample_value(
        "eventpipe_verify_rows_differing", {"table": "engagement_daily", "day_state": "provisional"}
    )
    assert rows == len([k for k in truth("engagement_daily") if k[0] == DAY])


def test_each_day_the_nightly_makes_final_is_verified(s3, settings, pg_schema):
    prepare(settings, s3, HISTORY)
    load_events(settings, HISTORY)
    execute(settings, "DELETE FROM engagement_daily WHERE day = %s", DAY)  # the nightly repairs it
    settings = settings.model_copy(update={"reprocess_lookback_days": 1})
    registry = CollectorRegistry()
    verifier = DayVerifier(
        settings, registry=registry, confirm_after_s=0, warehouse=warehouse_factory(settings)
    )
    now = datetime.combine(DAY + timedelta(days=2), time(settings.reprocess_hour_utc + 1), tzinfo=UTC)
    nightly = NightlyScheduler(
        settings,
        registry=registry,
        clock=lambda: now,
        after_day=verifier.final_day,
        adapters=build_reprocess(settings),
    )
    assert [r.day for r in nightly.run_due()] == [DAY]
    for table in ("engagement_daily", "experiment_daily", "experiment_assignments"):
        labels = {"table": table, "day_state": "final"}
        assert registry.get_sample_value("eventpipe_verify_rows_differing", labels) == 0, table


def _midday(day: date) -> datetime:
    return datetime.combine(day, time(12), tzinfo=UTC)


def test_an_unreadable_warehouse_is_exit_2_not_a_verdict(settings, pg_schema, monkeypatch, capsys):
    monkeypatch.setenv("EVENTPIPE_WAREHOUSE_DSN", settings.warehouse_dsn)
    monkeypatch.setenv("EVENTPIPE_WAREHOUSE_SCHEMA", settings.warehouse_schema)  # never migrated
    get_settings.cache_clear()
    try:
        assert cli.main(["verify", "--date", str(DAY)]) == 2
    finally:
        get_settings.cache_clear()
    assert "day_status" in capsys.readouterr().err


@hsettings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=histories(max_events=60, max_lag_minutes=1439))
def test_every_final_day_of_a_generated_history_verifies(s3, settings, pg_schema, history):
    """The invariant (contracts §7) on generated histories: late, out of order, retried,
    clocks ahead. The final rows equal the reference (what was sent) and verify agrees."""
    example = settings.model_copy(update={"s3_prefix": f"{settings.s3_prefix}{uuid.uuid4().hex[:8]}/"})
    execute(example, f'DROP SCHEMA IF EXISTS "{pg_schema}" CASCADE; CREATE SCHEMA "{pg_schema}"')
    prepare(example, s3, history)
    load_events(example, history)
    for day in DAYS:
        run_nightly(example, day, lateness_days=1, runner="inline", registry=CollectorRegistry())
    state = dump(example)
    for day in DAYS:
        assert day_rows(state, day) == truth_rows(history, day), day
        result = verify(example, day)
        assert (result.day_state, result.ok) == ("final", True), result.as_dict()


def anon(event: dict[str, Any], anonymous_id: str) -> dict[str, Any]:
    return {**event, "userId": None, "anonymousId": anonymous_id}


STITCHED = [  # one person: anonymous exposure and page view, then identify, then a conversion
    anon(exposure("s1", "-", "08:00:00", "08:00:00", "a"), "a1"),
    anon({**ev("s2", "-", "08:30:00", "08:30:00"), "type": "page", "event": None}, "a1"),
    {**ev("s3", "u9", "09:00:00", "09:00:00"), "type": "identify", "event": None, "anonymousId": "a1"},
    ev("s4", "u9", "10:00:00", "10:00:00"),
]


def test_final_days_count_persons_and_streamed_days_raw_ids(s3, settings, pg_schema):
    prepare(settings, s3, STITCHED)
    load_events(settings, STITCHED)
    raw, persons = reference.truth(STITCHED, stitch=False), reference.truth(STITCHED)
    assert raw["engagement_daily"][(DAY, "*")] == (3, 2) and persons["engagement_daily"][(DAY, "*")] == (3, 1)
    assert verify(settings).ok  # the stream counts raw ids: a1 and u9
    run_nightly(settings, DAY, lateness_days=1, runner="inline", registry=CollectorRegistry())
    assert day_rows(dump(settings), DAY) == truth_rows(STITCHED, DAY)
    assert verify(settings).ok  # the nightly counts persons: one
    # a final day still counting raw ids is wrong, and verify says so with the person count
    execute(settings, "UPDATE engagement_daily SET user_count = 2 WHERE day = %s AND event = '*'", DAY)
    rows = verify(settings).differing["engagement_daily"]
    assert [(r.key, r.stored, r.expected) for r in rows] == [
        ({"event": "*"}, {"event_count": 3, "user_count": 2}, {"event_count": 3, "user_count": 1})
    ]
