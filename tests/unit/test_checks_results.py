"""Check outcomes from Soda's scan results: rows, exit code, JSON and the table (no warehouse)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import yaml
from rich.console import Console

from eventpipe.checks.results import ERROR, FAIL, PASS, CheckResult, as_json, exit_code, from_scan, table
from eventpipe.checks.run import data_source, freshness_now

SCAN = {  # the shape of Soda Core 3.5.6's Scan.get_scan_results(), trimmed
    "checks": [
        {"name": "row_count > 0", "table": "events", "outcome": "pass", "diagnostics": {"value": 12}},
        {"name": "orders_completed > 0", "table": "engagement_daily", "outcome": "fail",
         "diagnostics": {"value": 0.0}},
        {"name": "broken > 0", "table": "engagement_daily", "outcome": None, "diagnostics": {}},
        {"name": "nan", "table": "x", "outcome": "pass", "diagnostics": {"value": float("nan")}},
    ]
}  # fmt: skip


def test_scan_results_become_rows_and_a_check_without_outcome_is_an_error() -> None:
    rows = from_scan(SCAN)
    assert rows == [
        CheckResult("engagement_daily", "broken > 0", ERROR, None),
        CheckResult("engagement_daily", "orders_completed > 0", FAIL, 0.0),
        CheckResult("events", "row_count > 0", PASS, 12.0),
        CheckResult("x", "nan", PASS, None),
    ]


def test_exit_code_fails_on_a_failure_an_error_or_nothing_run() -> None:
    passing = [CheckResult("events", "row_count > 0", PASS, 1.0)]
    assert exit_code(passing, []) == 0
    assert exit_code(passing, ["Query execution error"]) == 1
    assert exit_code(from_scan(SCAN), []) == 1
    assert exit_code([], []) == 2


def test_json_counts_and_table_shows_every_check() -> None:
    rows = from_scan(SCAN)
    assert as_json("2026-11-25", rows, [])["passed"] == 2
    assert as_json("2026-11-25", rows, [])["failed"] == 2
    console = Console(width=200, record=True, color_system=None)
    console.print(table("2026-11-25", rows))
    text = console.export_text()
    assert "2 of 4 passed" in text
    assert all(r.check in text for r in rows)


def test_soda_is_pointed_at_the_warehouse_schema() -> None:
    config = yaml.safe_load(data_source("postgresql://u:p%40ss@db.internal:6543/wh", "analytics", "postgres"))
    assert config == {
        "data_source eventpipe": {"type": "postgres", "host": "db.internal", "port": "6543", "username": "u",
                                  "password": "p@ss", "database": "wh", "schema": "analytics"}
    }  # fmt: skip
    assert yaml.safe_load(data_source("postgresql://u@h/wh", "s", "redshift"))["data_source eventpipe"][
        "type"
    ] == ("redshift")


def test_freshness_is_judged_at_the_end_of_the_day_or_now() -> None:
    late = datetime(2026, 11, 27, 3, tzinfo=UTC)
    assert freshness_now(date(2026, 11, 25), late) == datetime(2026, 11, 26, tzinfo=UTC)
    early = datetime(2026, 11, 25, 9, tzinfo=UTC)
    assert freshness_now(date(2026, 11, 25), early) == early
