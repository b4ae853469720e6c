"""Check outcomes (pure): from Soda's scan results to rows, a table, JSON and an exit code.

A check passes, fails, or could not be evaluated (``error``: its query failed, or it had
no value). Both ``fail`` and ``error`` fail the run: a check that cannot run protects nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from rich.table import Table

from eventpipe.terminal import safe

PASS, FAIL, ERROR = "pass", "fail", "error"


@dataclass(frozen=True)
class CheckResult:
    dataset: str
    check: str
    outcome: str  # PASS, FAIL or ERROR
    value: float | None

    @property
    def ok(self) -> bool:
        return self.outcome == PASS


def _value(diagnostics: Mapping[str, Any] | None) -> float | None:
    raw: Any = (diagnostics or {}).get("value")  # float(None) is a TypeError: no value
    try:
        value = float(raw)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def from_scan(scan_results: Mapping[str, Any]) -> list[CheckResult]:
    """Soda's ``Scan.get_scan_results()`` as rows; a check without an outcome is an error."""
    rows = []
    for check in scan_results.get("checks", []):
        outcome = check.get("outcome")
        rows.append(
            CheckResult(
                dataset=str(check.get("table") or ""),
                check=str(check.get("name") or ""),
                outcome=outcome if outcome in (PASS, FAIL) else ERROR,
                value=_value(check.get("diagnostics")),
            )
        )
    return sorted(rows, key=lambda r: (r.dataset, r.check))


def failed(rows: Iterable[CheckResult]) -> list[CheckResult]:
    return [r for r in rows if not r.ok]


def exit_code(rows: list[CheckResult], errors: list[str]) -> int:
    """0 all passed; 1 a check failed or could not run; 2 nothing ran (configuration, warehouse)."""
    if not rows:
        return 2
    return 1 if failed(rows) or errors else 0


def as_json(day: str, rows: list[CheckResult], errors: list[str]) -> dict[str, Any]:
    return {
        "day": day,
        "passed": sum(r.ok for r in rows),
        "failed": len(failed(rows)),
        "checks": [asdict(r) for r in rows],
        "errors": list(errors),
    }


def table(day: str, rows: list[CheckResult]) -> Table:
    out = Table(title=f"Data checks for {day}: {len(rows) - len(failed(rows))} of {len(rows)} passed")
    for column in ("dataset", "check", "value", "outcome"):
        out.add_column(column, justify="right" if column == "value" else "left")
    style = {PASS: "green", FAIL: "bold red", ERROR: "magenta"}
    for r in rows:
        value = "n/a" if r.value is None else f"{r.value:g}"
        out.add_row(safe(r.dataset), safe(r.check), value, f"[{style[r.outcome]}]{r.outcome}[/]")
    return out
