"""``eventpipe verify``: one day's stored aggregates against DESIGN.md's definitions applied
to ``events`` (docs/contracts.md §8). The loader runs it on a schedule (``verify_loop``).

The truth is SQL of its own (``dialects.truth``), run in the warehouse, independent of the
stream and of the nightly job; only differing rows travel back. Presentation: a rich table
per table (event data through ``eventpipe.terminal.safe``: an experiment id like ``[red]x``
is data, not markup) or JSON for scripts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from eventpipe.loader.dialects import Dialect
from eventpipe.loader.dialects.truth import checks, day_state
from eventpipe.terminal import safe
from eventpipe.timeutil import format_ts

FINAL, PROVISIONAL = "final", "provisional"
TABLES = ("engagement_daily", "experiment_daily", "experiment_assignments")


@dataclass
class RowDiff:
    key: dict[str, Any]
    stored: dict[str, Any] | None  # None: no stored row
    expected: dict[str, Any] | None  # None: the definitions give no row


@dataclass
class Verification:
    day: date
    day_state: str  # final | provisional
    differing: dict[str, list[RowDiff]] = field(default_factory=dict)  # table -> rows

    @property
    def ok(self) -> bool:
        return not any(self.differing.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "day_state": self.day_state,
            "ok": self.ok,
            "tables": {
                table: {"rows_differing": len(rows), "rows": [vars(r) for r in rows]}
                for table, rows in self.differing.items()
            },
        }


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_ts(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def _side(names: tuple[str, ...], values: tuple[Any, ...]) -> dict[str, Any] | None:
    return (
        None if all(v is None for v in values) else {n: _plain(v) for n, v in zip(names, values, strict=True)}
    )


def verify_day(conn: Any, dialect: Dialect, schema: str, day: date) -> Verification:
    """Compare ``day``'s rows of every aggregate table with the truth (read-only)."""
    with conn, conn.cursor() as cur:
        cur.execute(day_state(schema, day))
        found = cur.fetchone()
        final = bool(found and found[0])
        result = Verification(day, FINAL if final else PROVISIONAL)
        # final rows count persons (the nightly stitches); streamed rows raw ids (contracts §7)
        for check in checks(dialect, schema, day, stitched=final):
            cur.execute(check.query)
            k, v = len(check.keys), len(check.values)
            result.differing[check.table] = [
                RowDiff(
                    {n: _plain(x) for n, x in zip(check.keys, row[:k], strict=True)},
                    _side(check.values, row[k : k + v]),
                    _side(check.values, row[k + v :]),
                )
                for row in cur.fetchall()
            ]
    return result


def _text(value: Any) -> str:
    return safe("" if value is None else value)


def _values(side: dict[str, Any] | None) -> str:
    return "(no row)" if side is None else _text(", ".join(f"{k}={v}" for k, v in side.items()))


def print_table(result: Verification, console: Console) -> None:
    verdict = "[green]no row differs[/green]" if result.ok else "[red]rows differ[/red]"
    console.print(f"verify {result.day} ({result.day_state}): {verdict}")
    for table, rows in result.differing.items():
        if not rows:
            console.print(f"  {table}: all rows equal the definitions")
            continue
        view = Table(title=f"{table}: {len(rows)} row(s) differ")
        for column in ("row", "stored", "expected (from events)"):
            view.add_column(column)
        for row in rows:
            view.add_row(
                _text(", ".join(str(v) for v in row.key.values())), _values(row.stored), _values(row.expected)
            )
        console.print(view)
