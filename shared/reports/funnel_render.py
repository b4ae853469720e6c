"""Funnel and retention tables for people (rich); the JSON is ``funnels``' own dicts.

Event names and variants come from event data: every one goes through ``terminal.safe``.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from eventpipe.terminal import safe


def _pct(rate: float | None) -> str:
    return "n/a" if rate is None else f"{100 * rate:.1f}%"


def funnel_table(steps: list[dict[str, Any]], title: str) -> Table:
    table = Table(title=safe(title))
    for column in ("step", "event", "persons", "from start", "from previous"):
        table.add_column(column, justify="left" if column == "event" else "right")
    for n, row in enumerate(steps, start=1):
        table.add_row(
            str(n), safe(row["event"]), f"{row['persons']:,}",
            _pct(row["rate_from_start"]), _pct(row["rate_from_previous"]),
        )  # fmt: skip
    return table


def print_funnel(result: dict[str, Any], console: Console, within: str) -> None:
    """One table, or with an experiment one per variant and the last step's test."""
    if "variants" not in result:
        console.print(funnel_table(result["steps"], f"Funnel (each step within {within} of entry)"))
        return
    for row in result["variants"]:
        title = f"{result['experiment']} · variant {row['variant']} (within {within} of entry)"
        console.print(funnel_table(row["steps"], title))
        test = row["last_step"]
        if row["variant"] == result["control"]:
            console.print("(control)")
            continue
        lift = "n/a" if test["lift"] is None else f"{test['lift']:+.1%}"
        p = "n/a" if test["p_value"] is None else f"{test['p_value']:.3g}"
        console.print(f"last step vs {safe(result['control'])}: lift {lift}, p={p}", highlight=False)


def retention_table(result: dict[str, Any], period: str, title: str) -> Table:
    """The classic triangle: one row per cohort, column k = persons back k periods later."""
    table = Table(title=safe(title))
    table.add_column(f"cohort ({period})")
    table.add_column("persons", justify="right")
    width = max((len(c["returned"]) for c in result["cohorts"]), default=0)
    for k in range(1, width + 1):
        table.add_column(f"+{k}", justify="right")
    for cohort in result["cohorts"]:
        size = cohort["persons"]
        cells = [f"{n:,} ({_pct(n / size if size else None)})" for n in cohort["returned"]]
        table.add_row(cohort["cohort"], f"{size:,}", *cells, *[""] * (width - len(cells)))
    return table


def print_retention(result: dict[str, Any], console: Console, period: str, title: str) -> None:
    if not result["cohorts"]:
        console.print("no person did the cohort event in this range")
        return
    console.print(retention_table(result, period, title))
