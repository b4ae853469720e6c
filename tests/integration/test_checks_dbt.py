"""The dbt project's tests (shared/checks/dbt, docs/checks.md) through ``eventpipe checks run``,
against the real PostgreSQL and the real dbt of ``.local/dbt``: on healthy data every check of
both tools passes; each seeded fault makes exactly the one test fail that exists to catch it
(the oracle is the fault this test seeded, not what dbt printed)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from psycopg2 import sql

from eventpipe import cli
from eventpipe.bootstrap import warehouse_factory
from eventpipe.checks.dbt_run import PASSWORD_ENV, PROJECT, executable, profile
from eventpipe.checks.results import PASS
from eventpipe.checks.run import after_nightly
from eventpipe.loader.batches import batch_from_rows
from eventpipe.loader.dialects import get_dialect
from eventpipe.loader.dialects.redshift_lint import problems
from eventpipe.loader.load import load_group
from eventpipe.settings import Settings, get_settings
from eventpipe.timeutil import format_ts
from tests.integration.test_checks import DAY, execute, healthy
from tests.support.warehouse import migrated_connection

pytestmark = pytest.mark.integration


@pytest.fixture
def conn(settings: Settings, pg_schema: str) -> Iterator[Any]:
    assert executable(settings).exists(), "dbt is missing: scripts/stack.sh dbt (make up/test install it)"
    with migrated_connection(settings.warehouse_dsn, pg_schema) as connection:
        yield connection


def steady_history(conn: Any, schema: str) -> None:
    """The checks' healthy data, plus two step events on each of the two previous same weekdays
    (DAY has two: p1 and o1), so the weekday volume test has its minimum history; and u1's
    assignment to an experiment."""
    events = []
    for weeks in (1, 2):
        at = datetime(2026, 11, 25, 12, tzinfo=UTC) - timedelta(days=7 * weeks)
        for n in range(2):
            events.append({
                "type": "page", "messageId": f"h{weeks}-{n}", "userId": "u1", "anonymousId": None,
                "timestamp": format_ts(at), "receivedAt": format_ts(at), "source": "dev",
            })  # fmt: skip
    load_group(conn, get_dialect("postgres"), schema, "events", [batch_from_rows("raw/h", "events", events)])
    execute(
        conn,
        f'INSERT INTO "{schema}".experiment_assignments (experiment_id, user_key, variant, first_exposed_at) '
        "VALUES ('exp1', 'u1', 'control', '2026-11-25T12:00:00Z')",
    )


def checks_run(
    settings: Settings, schema: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> tuple[int, dict]:
    monkeypatch.setenv("EVENTPIPE_WAREHOUSE_DSN", settings.warehouse_dsn)
    monkeypatch.setenv("EVENTPIPE_WAREHOUSE_SCHEMA", schema)
    get_settings.cache_clear()
    try:
        code = cli.main(["checks", "run", "--date", str(DAY), "--format", "json"])
    finally:
        get_settings.cache_clear()
    return code, json.loads(capsys.readouterr().out)


def not_passed(printed: dict) -> list[tuple[str, str]]:
    return [(c["dataset"], c["check"]) for c in printed["checks"] if c["outcome"] != PASS]


def test_every_check_passes_on_healthy_data(
    conn: Any, settings: Settings, pg_schema: str, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    healthy(conn, pg_schema)
    steady_history(conn, pg_schema)
    code, printed = checks_run(settings, pg_schema, monkeypatch, capsys)
    assert (code, printed["errors"], not_passed(printed)) == (0, [], [])
    shown = {(c["dataset"], c["check"]) for c in printed["checks"]}
    assert {  # one of each kind docs/checks.md shows, from dbt
        ("dbt_persons", "not_null(person)"),
        ("dbt_persons", "unique(raw_id)"),
        ("events", "accepted_values(type)"),
        ("experiment_assignments", "relationships(user_key)"),
        ("events", "source_freshness < 1d"),
        ("dbt_funnel_step_events", "non_zero"),
        ("dbt_funnel_step_events", "volume_vs_previous_weekdays"),
        ("dbt", "models_match_the_warehouse_views"),
    } <= shown


S = "{s}"
COLUMNS = "(message_id, type, user_id, anonymous_id, source, timestamp, received_at)"
NEW_EVENT = f"INSERT INTO {S}.events {COLUMNS} VALUES "
ASSIGN = f"INSERT INTO {S}.experiment_assignments VALUES "


@pytest.mark.parametrize(
    ("fault", "caught_by"),
    [
        # an event without any id: its raw id has no person
        (NEW_EVENT + "('n1', 'identify', NULL, NULL, 'dev', '2026-11-25T13:00:00Z', '2026-11-25T13:00:00Z')",
         ("dbt_persons", "not_null(person)")),
        # a person assigned twice in one experiment (Redshift enforces no primary key; here it is dropped)
        (f"ALTER TABLE {S}.experiment_assignments DROP CONSTRAINT experiment_assignments_pkey; "
         f"{ASSIGN}('exp1', 'u1', 'treatment', '2026-11-25T13:00:00Z')",
         ("experiment_assignments", "unique(experiment_id || '|' || user_key)")),
        (f"UPDATE {S}.events SET type = 'trakc' WHERE message_id = 'h1-0'",
         ("events", "accepted_values(type)")),
        # an assignment of an id that no event carries
        (f"{ASSIGN}('exp1', 'ghost', 'control', '2026-11-25T13:00:00Z')",
         ("experiment_assignments", "relationships(user_key)")),
        # a day without step events: test_the_nightly_records_dbt_results_and_exports_their_metrics
        # ten more step events on the same weekday a week before: DAY's 2 against a mean of 7
        (f"INSERT INTO {S}.events {COLUMNS} SELECT 'w' || g, 'page', 'u1', NULL, 'dev', "
         "'2026-11-18T12:00:00Z', '2026-11-18T12:00:00Z' FROM generate_series(1, 10) g",
         ("dbt_funnel_step_events", "volume_vs_previous_weekdays")),
        # nothing received since five days before the day under test
        (f"UPDATE {S}.events SET received_at = '2026-11-20T00:00:00Z'", ("events", "source_freshness < 1d")),
        # migration 7's view and the model disagree on a person
        (f"CREATE OR REPLACE VIEW {S}.persons AS SELECT DISTINCT coalesce(nullif(user_id, ''), anonymous_id) "
         f"AS raw_id, coalesce(nullif(user_id, ''), anonymous_id) AS person FROM {S}.events",
         ("dbt", "models_match_the_warehouse_views")),
    ],
    ids=["null", "duplicate-person", "unknown-value", "relationship", "volume-drop", "stale-source",
         "model-drift"],
)  # fmt: skip
def test_each_seeded_fault_fails_exactly_its_test(
    conn: Any,
    settings: Settings,
    pg_schema: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: Any,
    fault: str,
    caught_by: tuple[str, str],
) -> None:
    healthy(conn, pg_schema)
    steady_history(conn, pg_schema)
    execute(conn, fault.format(s=f'"{pg_schema}"'))
    code, printed = checks_run(settings, pg_schema, monkeypatch, capsys)
    assert (code, printed["errors"], not_passed(printed)) == (1, [], [caught_by])


def test_the_nightly_records_dbt_results_and_exports_their_metrics(
    conn: Any, settings: Settings, pg_schema: str
) -> None:
    """The loader's hook after a day is made final (``after_nightly``) runs the dbt tests too: a
    day without step events (and so without history: only ``non_zero`` can say it) is one
    failing row in ``check_results`` and in the metrics."""
    healthy(conn, pg_schema)
    steady_history(conn, pg_schema)
    execute(conn, f"DELETE FROM \"{pg_schema}\".events WHERE type IN ('page', 'track')")
    registry = CollectorRegistry()
    after_nightly(settings, warehouse_factory(settings), registry)(SimpleNamespace(day=DAY))
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT dataset, check_name, outcome FROM {} WHERE outcome <> 'pass'").format(
                sql.Identifier(pg_schema, "check_results")
            )
        )
        assert cur.fetchall() == [("dbt_funnel_step_events", "non_zero", "fail")]
    assert registry.get_sample_value("eventpipe_checks_failed") == 1
    labels = {"dataset": "dbt_funnel_step_events", "check": "non_zero"}
    assert registry.get_sample_value("eventpipe_check_failing", labels) == 1


def test_the_compiled_models_and_tests_pass_the_redshift_lint(
    settings: Settings, pg_schema: str, tmp_path: Path
) -> None:
    """What dbt sends the warehouse, compiled: every model and test is SQL Redshift runs (issue 17's
    lint: sqlglot's Redshift parser and AWS's lists of unsupported PostgreSQL features). The one
    dispatched macro, ``utc_date``, renders CONVERT_TIMEZONE on Redshift (the loader's form)."""
    text, password = profile(settings.warehouse_dsn, pg_schema, "postgres")
    (tmp_path / "profiles.yml").write_text(text)
    done = subprocess.run(
        [str(executable(settings)), "compile", "--project-dir", str(PROJECT), "--profiles-dir", str(tmp_path),
         "--target-path", str(tmp_path / "target"), "--log-path", str(tmp_path / "logs"),
         "--vars", json.dumps({"date": str(DAY), "freshness_now": "2026-11-26T00:00:00+00:00"})],
        env={**os.environ, PASSWORD_ENV: password, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:]
    compiled = {p.name: p.read_text() for p in (tmp_path / "target" / "compiled").rglob("*.sql")}
    assert {"dbt_persons.sql", "dbt_funnel_step_events.sql", "models_match_the_warehouse_views.sql"} <= set(
        compiled
    )
    assert len(compiled) >= 14
    assert {name: problems(sql) for name, sql in compiled.items() if problems(sql)} == {}
