"""The data tests (Soda Core over SodaCL, docs/checks.md) against the real PostgreSQL: every
shipped check passes on healthy data, each kind fails on the data it exists to catch, and
``eventpipe checks run`` records what it found and exits non-zero on a failure."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from psycopg2 import sql

from eventpipe import cli
from eventpipe.checks.results import FAIL, PASS
from eventpipe.checks.run import CheckRun, export, scan
from eventpipe.loader.batches import batch_from_rows
from eventpipe.loader.dialects import get_dialect
from eventpipe.loader.load import load_group
from eventpipe.settings import Settings, get_settings
from eventpipe.timeutil import format_ts
from tests.support.warehouse import migrated_connection

pytestmark = pytest.mark.integration
DAY = date(2026, 11, 25)
NOW = datetime(2026, 11, 26, 3, tzinfo=UTC)  # the nightly run after DAY


@pytest.fixture
def conn(settings: Settings, pg_schema: str) -> Iterator[Any]:
    with migrated_connection(settings.warehouse_dsn, pg_schema) as connection:
        yield connection


def execute(conn: Any, statement: str, *params: Any) -> None:
    with conn, conn.cursor() as cur:
        cur.execute(statement, params)


def healthy(conn: Any, schema: str) -> None:
    """DAY and the same weekday of four weeks before: steady volume, orders, a linked device."""
    at = datetime(2026, 11, 25, 12, tzinfo=UTC)
    events = [
        {"type": "page", "messageId": "p1", "userId": None, "anonymousId": "a1"},
        {"type": "identify", "messageId": "i1", "userId": "u1", "anonymousId": "a1"},
        {"type": "track", "messageId": "o1", "userId": "u1", "anonymousId": "a1", "event": "Order Completed"},
    ]
    for e in events:
        e.update(timestamp=format_ts(at), receivedAt=format_ts(at), source="dev")
    load_group(conn, get_dialect("postgres"), schema, "events", [batch_from_rows("raw/1", "events", events)])
    for weeks in range(5):
        day = DAY - timedelta(days=7 * weeks)
        for event, count in (("*", 100), ("Order Completed", 10)):
            execute(
                conn,
                f'INSERT INTO "{schema}".engagement_daily (day, event, event_count, user_count) '
                "VALUES (%s, %s, %s, %s)",
                day, event, count, 5,
            )  # fmt: skip


def outcomes(run: CheckRun) -> dict[str, str]:
    return {r.check: r.outcome for r in run.rows}


def test_every_shipped_check_passes_on_healthy_data(conn: Any, settings: Settings, pg_schema: str) -> None:
    healthy(conn, pg_schema)
    run = scan(settings, DAY, NOW)
    assert run.errors == []
    assert len(run.rows) >= 9 and set(outcomes(run).values()) == {PASS}, outcomes(run)


@pytest.mark.parametrize(
    ("breakage", "check"),
    [
        ("UPDATE {s}.engagement_daily SET event_count = 30 WHERE day = '2026-11-25' AND event = '*'",
         "all_events_volume_change between -0.5 and 1"),  # a 70% drop against the same weekdays
        ("UPDATE {s}.engagement_daily SET event_count = 250 WHERE day = '2026-11-25' AND event = '*'",
         "all_events_volume_change between -0.5 and 1"),  # 2.5 times the usual volume
        ("DELETE FROM {s}.engagement_daily WHERE day = '2026-11-25' AND event = 'Order Completed'",
         "orders_completed > 0"),
        ("DELETE FROM {s}.events WHERE message_id = 'i1'",
         "values in (message_id) must exist in events (message_id)"),
        # accepted values, freshness and the models' checks are dbt's: tests/integration/test_checks_dbt.py
    ],
)  # fmt: skip
def test_each_kind_of_check_catches_its_breakage(
    conn: Any, settings: Settings, pg_schema: str, breakage: str, check: str
) -> None:
    healthy(conn, pg_schema)
    execute(conn, breakage.format(s=f'"{pg_schema}"'))
    found = outcomes(scan(settings, DAY, NOW))
    assert found[check] == FAIL
    assert [name for name, outcome in found.items() if outcome != PASS] == [check]


def test_the_cli_records_results_and_exits_non_zero_on_failure(
    conn: Any, settings: Settings, pg_schema: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    healthy(conn, pg_schema)
    execute(conn, f"DELETE FROM \"{pg_schema}\".engagement_daily WHERE event = 'Order Completed'")
    monkeypatch.setenv("EVENTPIPE_WAREHOUSE_DSN", settings.warehouse_dsn)
    monkeypatch.setenv("EVENTPIPE_WAREHOUSE_SCHEMA", pg_schema)
    get_settings.cache_clear()
    try:
        assert cli.main(["checks", "run", "--date", str(DAY), "--format", "json"]) == 1
    finally:
        get_settings.cache_clear()
    printed = json.loads(capsys.readouterr().out)
    assert printed["failed"] == 1 and printed["day"] == "2026-11-25"
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT check_name, outcome, value FROM {} WHERE outcome <> 'pass'").format(
                sql.Identifier(pg_schema, "check_results")
            )
        )
        assert cur.fetchall() == [("orders_completed > 0", "fail", 0.0)]
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(pg_schema, "check_results")))
        assert cur.fetchone()[0] == printed["passed"] + printed["failed"]


def test_metrics_say_how_many_checks_fail(conn: Any, settings: Settings, pg_schema: str) -> None:
    healthy(conn, pg_schema)
    execute(conn, f"DELETE FROM \"{pg_schema}\".engagement_daily WHERE event = 'Order Completed'")
    registry = CollectorRegistry()
    export(scan(settings, DAY, NOW), registry)
    assert registry.get_sample_value("eventpipe_checks_failed") == 1
    labels = {"dataset": "engagement_daily", "check": "orders_completed > 0"}
    assert registry.get_sample_value("eventpipe_check_failing", labels) == 1
    assert registry.get_sample_value("eventpipe_checks_last_run_timestamp_seconds") == NOW.timestamp()
