"""Presentation: rich tables for people, strict JSON for machines (NaN can never leak).

Every value that comes from event data goes through ``eventpipe.terminal.safe``: escaped
markup, no control characters.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.table import Table

from eventpipe.reports.analysis import ALPHA, Report, verdict
from eventpipe.reports.freshness import OK, STALE, UNKNOWN, Status
from eventpipe.reports.warehouse import ExperimentSummary
from eventpipe.terminal import safe

_STATE_STYLE = {OK: "green", STALE: "yellow", UNKNOWN: "magenta"}


def to_json(value: Any) -> str:
    """``allow_nan=False``: a NaN is a bug to surface, not a silent ``NaN`` token."""
    return json.dumps(value, allow_nan=False, indent=2, default=str)


def _num(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def report_table(report: Report, console: Console) -> None:
    title = f"{report.experiment} · goal {report.goal!r} · control {report.control!r}"
    table = Table(title=safe(title))
    for column in ("variant", "users", "converters", "rate", "lift", "95% CI of diff (pts)", "p-value"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for result in report.variants:
        c, cmp = result.counts, result.comparison
        if cmp is None:
            lift = ci = p = "(control)"
        else:
            lift = _num(cmp.lift, "+.1%")
            ci = "n/a" if cmp.ci95 is None else f"[{cmp.ci95[0] * 100:+.2f}, {cmp.ci95[1] * 100:+.2f}]"
            p = _num(cmp.p_value, ".3g")
            if cmp.p_value is not None and cmp.p_value < ALPHA:
                p = f"[bold]{p}[/bold]"
        table.add_row(safe(c.variant), str(c.users), str(c.converters), _num(c.rate, ".2%"), lift, ci, p)
    console.print(table)
    srm = _num(report.srm_p_value, ".3g")
    console.print(f"[bold]Verdict:[/bold] {safe(verdict(report))}", highlight=False)  # no URL styling of data
    console.print(f"Sample ratio check: p={srm} (mismatch below 0.001)")
    for warning in report.warnings:
        console.print(f"[yellow]warning[/yellow] {safe(warning)}", highlight=False)


def experiments_table(items: list[ExperimentSummary], console: Console) -> None:
    if not items:
        console.print("no experiment exposures in the warehouse yet")
        return
    table = Table(title="experiments")
    for column in ("experiment", "variants", "exposures", "exposed users", "first exposure", "last exposure"):
        table.add_column(column)
    for x in items:
        table.add_row(
            safe(x.experiment_id),
            safe(", ".join(x.variants)),
            str(x.exposures),
            str(x.exposed_users),
            f"{x.first_exposure:%Y-%m-%d %H:%M}",
            f"{x.last_exposure:%Y-%m-%d %H:%M}",
        )
    console.print(table)


def experiments_json(items: list[ExperimentSummary]) -> str:
    return to_json([asdict(x) for x in items])


def status_table(status: Status, console: Console) -> None:
    table = Table(title="pipeline freshness")
    for column in ("stage", "state", "detail"):
        table.add_column(column)
    for stage in status.stages:
        style = _STATE_STYLE.get(stage.state, "red")
        table.add_row(safe(stage.stage), f"[{style}]{safe(stage.state)}[/{style}]", safe(stage.detail))
    console.print(table)
    if status.days:
        days = "  ".join(f"{d:%m-%d} {state}" for d, state in status.days)
        console.print(f"days: {days}", highlight=False)


def status_json(status: Status) -> str:
    return to_json(
        {
            "stages": [asdict(s) for s in status.stages],
            "days": [{"day": d.isoformat(), "state": state} for d, state in status.days],
        }
    )
