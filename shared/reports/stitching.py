"""What identity stitching changes, measured on the warehouse (``make demo`` prints it).

Persons (docs/contracts.md §7) against raw ids (``userId``, else ``anonymousId``: what a
pipeline without stitching counts): daily active users, and each experiment's persons and
conversion rate per variant. Both sides come from the same ``events`` at query time, so
the difference is stitching alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from rich.markup import escape
from rich.table import Table

from eventpipe.reports import sqlbuild
from eventpipe.reports import warehouse as wh


@dataclass(frozen=True)
class VariantDrift:
    variant: str
    persons: int
    person_rate: float | None
    raw_ids: int
    raw_rate: float | None


def _rate(converters: int, users: int) -> float | None:
    return converters / users if users else None


def experiment_drift(conn: Any, schema: str, experiment: str, goal: str) -> list[VariantDrift]:
    persons = {c.variant: c for c in wh.variant_counts(conn, schema, experiment, goal)}
    raw = {c.variant: c for c in wh.variant_counts(conn, schema, experiment, goal, sqlbuild.RAW)}
    out = []
    for variant in sorted(persons.keys() | raw.keys()):
        p, r = persons.get(variant), raw.get(variant)
        out.append(
            VariantDrift(
                variant,
                p.users if p else 0,
                _rate(p.converters, p.users) if p else None,
                r.users if r else 0,
                _rate(r.converters, r.users) if r else None,
            )
        )
    return out


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.1f}%"


def _off(raw: float | None, persons: float | None) -> str:
    if raw is None or not persons:
        return "-"
    return f"{100 * (raw / persons - 1):+.1f}%"


def dau_table(days: list[tuple[date, int, int]]) -> Table:
    table = Table(title="DAU: persons (stitched) vs raw ids (userId, else anonymousId)")
    for column in ("day", "persons", "raw ids", "raw ids off by"):
        table.add_column(column, justify="left" if column == "day" else "right")
    for day, persons, raw in days:
        table.add_row(str(day), f"{persons:,}", f"{raw:,}", _off(raw, persons))
    return table


def experiment_table(experiment: str, goal: str, rows: list[VariantDrift]) -> Table:
    table = Table(title=f"{escape(experiment)}, goal {escape(goal)}: persons vs raw ids")
    for column in ("variant", "persons", "rate", "raw ids", "raw-id rate", "rate off by"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for r in rows:
        table.add_row(
            escape(r.variant), f"{r.persons:,}", _pct(r.person_rate), f"{r.raw_ids:,}",
            _pct(r.raw_rate), _off(r.raw_rate, r.person_rate),
        )  # fmt: skip
    return table
