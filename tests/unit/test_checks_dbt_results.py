"""dbt's artifacts as check rows, and the dbt profile (no warehouse, no dbt)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import yaml

from eventpipe.checks.dbt_results import from_build, from_freshness
from eventpipe.checks.dbt_run import PASSWORD_ENV, build, profile
from eventpipe.checks.results import ERROR, FAIL, PASS, CheckResult
from eventpipe.settings import Settings

MANIFEST = {  # the shape of dbt 1.11's target/manifest.json, trimmed to what is read
    "nodes": {
        "test.eventpipe.unique_dbt_persons_raw_id.1": {
            "name": "unique_dbt_persons_raw_id",
            "test_metadata": {"name": "unique", "kwargs": {
                "column_name": "raw_id", "model": "{{ get_where_subquery(ref('dbt_persons')) }}"}},
        },
        "test.eventpipe.source_accepted_values_warehouse_events_type.2": {
            "name": "source_accepted_values_warehouse_events_type",
            "test_metadata": {"name": "accepted_values", "kwargs": {
                "column_name": "type", "model": "{{ get_where_subquery(source('warehouse', 'events')) }}"}},
        },
        "test.eventpipe.non_zero_dbt_funnel_step_events_day.3": {
            "name": "non_zero_dbt_funnel_step_events_day",
            "test_metadata": {"name": "non_zero", "kwargs": {
                "model": "{{ get_where_subquery(ref('dbt_funnel_step_events')) }}"}},
        },
        "test.eventpipe.non_zero_dbt_funnel_step_events_orders.4": {
            "name": "non_zero_dbt_funnel_step_events_orders",
            "test_metadata": {"name": "non_zero", "kwargs": {
                "model": "{{ get_where_subquery(ref('dbt_funnel_step_events')) }}"}},
        },
        "test.eventpipe.models_match.5": {
            "name": "models_match", "depends_on": {"nodes": ["model.eventpipe.a", "model.eventpipe.b"]},
        },
        "model.eventpipe.dbt_persons": {"name": "dbt_persons"},
    }
}  # fmt: skip
RUN_RESULTS = {
    "results": [
        {"unique_id": "test.eventpipe.unique_dbt_persons_raw_id.1", "status": "pass", "failures": 0},
        {"unique_id": "test.eventpipe.source_accepted_values_warehouse_events_type.2", "status": "fail",
         "failures": 3},
        {"unique_id": "test.eventpipe.non_zero_dbt_funnel_step_events_day.3", "status": "warn",
         "failures": 1},
        {"unique_id": "test.eventpipe.non_zero_dbt_funnel_step_events_orders.4", "status": "skipped",
         "failures": None},
        {"unique_id": "test.eventpipe.models_match.5", "status": "error", "failures": None},
        {"unique_id": "model.eventpipe.dbt_persons", "status": "success"},
        {"unique_id": "model.eventpipe.dbt_retention_cohorts", "status": "error"},
    ]
}  # fmt: skip


def test_tests_become_rows_named_by_kind_and_column_on_their_model_or_source() -> None:
    assert from_build(RUN_RESULTS, MANIFEST) == [
        CheckResult("dbt", "models_match", ERROR, None),  # a singular test on two models
        # two tests of one kind on one model keep dbt's unique names
        CheckResult("dbt_funnel_step_events", "non_zero_dbt_funnel_step_events_day", FAIL, 1.0),
        CheckResult("dbt_funnel_step_events", "non_zero_dbt_funnel_step_events_orders", ERROR, None),
        CheckResult("dbt_persons", "unique(raw_id)", PASS, 0.0),
        CheckResult("dbt_retention_cohorts", "build", ERROR, None),  # a model that did not build
        CheckResult("events", "accepted_values(type)", FAIL, 3.0),
    ]


def test_freshness_results_become_rows_with_the_age_in_seconds() -> None:
    sources = {"results": [
        {"unique_id": "source.eventpipe.warehouse.events", "status": "pass",
         "max_loaded_at_time_ago_in_s": 54000.0, "criteria": {"error_after": {"count": 1, "period": "day"}}},
        {"unique_id": "source.eventpipe.warehouse.identities", "status": "error",
         "max_loaded_at_time_ago_in_s": 432000, "criteria": {"error_after": {"count": 6, "period": "hour"}}},
        {"unique_id": "source.eventpipe.warehouse.gone", "status": "runtime error", "criteria": {}},
    ]}  # fmt: skip
    assert from_freshness(sources) == [
        CheckResult("events", "source_freshness < 1d", PASS, 54000.0),
        CheckResult("identities", "source_freshness < 6h", FAIL, 432000.0),
        CheckResult("gone", "source_freshness < ?", ERROR, None),
    ]


def test_the_profile_names_the_warehouse_but_never_holds_the_password() -> None:
    dsn = "postgresql://ana:s3cret@db.example:6543/wh?sslmode=require"
    text, password = profile(dsn, "analytics", "postgres")
    output = yaml.safe_load(text)["eventpipe"]["outputs"]["warehouse"]
    assert "s3cret" not in text and password == "s3cret"
    assert output["password"] == "{{ env_var('" + PASSWORD_ENV + "') }}"
    assert (output["type"], output["host"], output["port"]) == ("postgres", "db.example", 6543)
    assert output["user"] == "ana"
    assert (output["dbname"], output["schema"], output["sslmode"]) == ("wh", "analytics", "require")
    redshift, _ = profile("host=rs.example user=u dbname=d", "s", "redshift")
    assert yaml.safe_load(redshift)["eventpipe"]["outputs"]["warehouse"]["port"] == 5439


def test_a_missing_dbt_is_a_clear_error_that_says_how_to_install_it(tmp_path: Path) -> None:
    settings = Settings(dbt_executable=str(tmp_path / "no-dbt"))
    run = build(settings, date(2026, 11, 25), datetime(2026, 11, 26, tzinfo=UTC))
    assert run.rows == [] and len(run.errors) == 1
    assert "scripts/stack.sh" in run.errors[0] and "make up" in run.errors[0]
