"""Funnels and retention: the rules on input, the JSON shapes, the tables (no warehouse)."""

from __future__ import annotations

import math
from datetime import date, timedelta

import pytest
from psycopg2 import sql
from rich.console import Console

from eventpipe.cli import main
from eventpipe.loader.dialects.redshift_lint import problems
from eventpipe.reports import funnelsql
from eventpipe.reports.errors import ReportError
from eventpipe.reports.funnel_render import funnel_table, print_funnel, retention_table
from eventpipe.reports.funnels import (
    FunnelQuery,
    RetentionQuery,
    funnel_experiment_json,
    funnel_json,
    parse_within,
    periods_after,
    retention_json,
)
from tests.support.dialect_sql import render

D = date(2026, 11, 25)  # a Wednesday
ONE_STEP, TWO_STEPS = ["funnel", "--step", "a"], ["funnel", "--step", "a", "--step", "b"]
DAY = ["--from", "2026-11-25", "--to", "2026-11-25"]


@pytest.mark.parametrize(
    ("text", "seconds"), [("24h", 86400), ("30m", 1800), ("7d", 604800), ("90s", 90), (" 2h ", 7200)]
)
def test_within_reads_a_number_and_a_unit(text: str, seconds: int) -> None:
    assert parse_within(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "24", "h", "1.5h", "-1h", "0h", "1w", "367d", "24 hours"])
def test_a_bad_within_is_refused_with_the_reason(text: str) -> None:
    with pytest.raises(ReportError, match="--within"):
        parse_within(text)


def test_a_funnel_needs_two_different_steps_and_an_ordered_range() -> None:
    with pytest.raises(ReportError, match="at least 2 --step"):
        FunnelQuery(("page",), D, D)
    with pytest.raises(ReportError, match="repeated: page"):
        FunnelQuery(("page", "Signed Up", "page"), D, D)
    with pytest.raises(ReportError, match="must not be empty"):
        FunnelQuery(("page", " "), D, D)
    with pytest.raises(ReportError, match="--from 2026-11-26 is after --to 2026-11-25"):
        FunnelQuery(("page", "Signed Up"), D + timedelta(days=1), D)


def test_retention_checks_its_period_and_range() -> None:
    with pytest.raises(ReportError, match="day or week"):
        RetentionQuery("page", "page", "month", D, D)
    with pytest.raises(ReportError, match="after --to"):
        RetentionQuery("page", "page", "week", D, D - timedelta(days=1))


def test_funnel_rates_from_start_and_from_previous() -> None:
    assert funnel_json(["a", "b", "c"], [200, 50, 10]) == {
        "steps": [
            {"event": "a", "persons": 200, "rate_from_start": 1.0, "rate_from_previous": 1.0},
            {"event": "b", "persons": 50, "rate_from_start": 0.25, "rate_from_previous": 0.25},
            {"event": "c", "persons": 10, "rate_from_start": 0.05, "rate_from_previous": 0.2},
        ]
    }
    nobody = funnel_json(["a", "b"], [0, 0])["steps"]
    assert [(s["rate_from_start"], s["rate_from_previous"]) for s in nobody] == [(None, None), (None, None)]


def test_experiment_funnel_tests_the_last_step_against_control() -> None:
    result = funnel_experiment_json("exp", ["a", "b"], {"green": [100, 20], "control": [100, 10]})
    assert [v["variant"] for v in result["variants"]] == ["control", "green"]
    assert result["variants"][0]["last_step"] == {"lift": None, "ci95": [None, None], "p_value": None}
    green = result["variants"][1]["last_step"]
    # by hand: pooled rate 0.15, z = 0.10 / sqrt(0.15 * 0.85 * (2 / 100)) = 1.9803
    z = 0.1 / math.sqrt(0.15 * 0.85 * 0.02)
    assert green["p_value"] == pytest.approx(math.erfc(z / math.sqrt(2)))
    assert green["p_value"] == pytest.approx(0.04767, abs=1e-4)
    assert green["lift"] == pytest.approx(1.0)
    with pytest.raises(ReportError, match="control variant 'control' has nobody"):
        funnel_experiment_json("exp", ["a", "b"], {"green": [1, 1]})


def test_retention_rows_form_a_triangle_up_to_the_last_day() -> None:
    query = RetentionQuery("page", "page", "day", D, D + timedelta(days=2))
    sizes = {D: 10, D + timedelta(days=1): 4, D + timedelta(days=2): 3}
    result = retention_json(query, sizes, {(D, 2): 5, (D + timedelta(days=1), 1): 1})
    assert result == {
        "cohorts": [
            {"cohort": "2026-11-25", "persons": 10, "returned": [0, 5]},
            {"cohort": "2026-11-26", "persons": 4, "returned": [1]},
            {"cohort": "2026-11-27", "persons": 3, "returned": []},
        ]
    }


def test_weeks_start_on_monday() -> None:
    monday = date(2026, 11, 23)
    assert periods_after(monday, monday + timedelta(days=6), "week") == 0
    assert periods_after(monday, monday + timedelta(days=7), "week") == 1
    assert periods_after(monday - timedelta(days=7), D, "week") == 1


# a stand-in for the assignments (PostgreSQL JSON today): the lint judges the rest; the step
# events are the view funnel_step_events, whose Redshift SQL the migrations' lint covers
ASSIGNMENTS = sql.SQL('SELECT a.* FROM "s"."experiment_assignments" a')


@pytest.mark.parametrize(
    "statement",
    [
        funnelsql.funnel("s", ["page", "Signed Up", "Order Completed"], timedelta(hours=24)),
        funnelsql.funnel("s", ["page", "Signed Up"], timedelta(days=7), "exp", assignments=ASSIGNMENTS),
        funnelsql.retention("s", "page", "Order Completed", "day"),
        funnelsql.retention("s", "page", "page", "week"),
    ],
)
def test_the_funnel_and_retention_sql_passes_the_redshift_lint(statement: sql.Composable) -> None:
    assert problems(render(statement)) == []


def test_the_lint_does_see_postgres_only_sql_in_the_funnel() -> None:
    """Step events read with DISTINCT ON: the lint names it, so it reads the funnel's SQL."""
    events = sql.SQL('SELECT DISTINCT ON (e.person) e.person, e.event, e.at FROM "s"."funnel_step_events" e')
    assert problems(render(funnelsql.funnel("s", ["page", "Signed Up"], timedelta(hours=1), events=events)))


def _text(renderable: object) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_the_triangle_shows_counts_and_percentages() -> None:
    result = {"cohorts": [{"cohort": "2026-11-25", "persons": 8, "returned": [2, 1]},
                          {"cohort": "2026-11-26", "persons": 0, "returned": [0]}]}  # fmt: skip
    lines = _text(retention_table(result, "day", "t")).splitlines()
    row = next(line for line in lines if "2026-11-25" in line)
    assert "2 (25.0%)" in row and "1 (12.5%)" in row
    assert "0 (n/a)" in next(line for line in lines if "2026-11-26" in line)
    assert "+2" in next(line for line in lines if "+1" in line)


def test_event_names_cannot_style_the_table() -> None:
    text = _text(funnel_table(funnel_json(["[bold]x[/bold]", "b"], [1, 0])["steps"], "t"))
    assert "[bold]x[/bold]" in text


def test_the_experiment_funnel_prints_each_variant_and_its_test() -> None:
    console = Console(width=200, record=True, color_system=None)
    result = funnel_experiment_json("exp", ["a", "b"], {"green": [100, 20], "control": [100, 10]})
    print_funnel(result, console, "24h")
    text = console.export_text()
    assert "variant control" in text and "variant green" in text
    assert "last step vs control: lift +100.0%, p=0.0477" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([*ONE_STEP, *DAY], "at least 2 --step"),
        ([*TWO_STEPS, "--from", "2026-11-26", "--to", "2026-11-25"], "after --to"),
        ([*TWO_STEPS, *DAY, "--within", "1y"], "--within"),
    ],
)  # fmt: skip
def test_the_cli_refuses_bad_input_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "argv",
    [
        [*TWO_STEPS, "--from", "2026-11-25", "--to", "x"],
        [*TWO_STEPS, *DAY, "--format", "csv"],
        ["retention", "--cohort-event", "a", "--return-event", "b", "--period", "month", *DAY],
    ],
)  # fmt: skip
def test_argparse_refuses_bad_dates_formats_and_periods(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
