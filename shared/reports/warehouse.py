"""Warehouse adapter of the reports: runs ``sqlbuild``'s queries, returns plain values.

Read-only. Missing tables are facts ("unknown"), not errors: a fresh warehouse, or one
whose nightly job never ran, still gets a report. Sessions come from the warehouse adapter
(``eventpipe.loader.connection``), whose driver errors arrive as ``WarehouseError``. The
queries come from the pure builders ``sqlbuild`` and ``statesql``: no SQL text here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from eventpipe.errors import WarehouseError
from eventpipe.loader.connection import session, translated
from eventpipe.loader.dialects import Statement
from eventpipe.reports import sqlbuild, statesql
from eventpipe.reports.analysis import MultiExposure
from eventpipe.reports.errors import UnknownExperiment
from eventpipe.reports.freshness import LoadFacts
from eventpipe.reports.stats import VariantCounts
from eventpipe.settings import Settings


@dataclass(frozen=True)
class ExperimentSummary:
    experiment_id: str
    variants: list[str]
    exposures: int
    exposed_users: int
    first_exposure: datetime
    last_exposure: datetime


def dialect_of(conn: Any) -> str:
    """The dialect the connection was opened for (a plain connection: PostgreSQL)."""
    return getattr(conn, "dialect", sqlbuild.POSTGRES)


@contextmanager
def connect(settings: Settings) -> Iterator[Any]:
    """A read-only session in the ``reports`` query group (Redshift WLM, docs/loader.md)."""
    with session(
        settings.warehouse_dsn,
        "eventpipe-reports",
        dialect=settings.warehouse_dialect,
        readonly=True,
        autocommit=True,
    ) as conn:
        yield conn


def _rows(conn: Any, query: Statement, params: dict[str, Any] | None = None) -> list[tuple]:
    with translated("warehouse query failed"), conn.cursor() as cur:
        cur.execute(query, params)
        return list(cur.fetchall())


def has_table(conn: Any, schema: str, name: str) -> bool:
    found = _rows(conn, statesql.has_table(dialect_of(conn)), {"s": schema, "n": name})[0][0]
    return bool(found) if dialect_of(conn) == sqlbuild.REDSHIFT else found is not None


def _require(conn: Any, schema: str, *names: str) -> None:
    missing = [n for n in names if not has_table(conn, schema, n)]
    if missing:
        raise WarehouseError(f"warehouse schema {schema!r} lacks {', '.join(missing)} (loader not run yet?)")


# the other report modules (funnels, retention) run their queries through the same boundary
rows, require = _rows, _require

_EXPERIMENT = sqlbuild.EXPERIMENT_PARAM


def experiment_start(conn: Any, schema: str, experiment: str) -> datetime | None:
    """First exposure of the experiment; raises ``UnknownExperiment`` when it has none."""
    _require(conn, schema, "events", "identities")
    assigned, exposed, first = _rows(
        conn, sqlbuild.experiment_known(schema, _EXPERIMENT, dialect_of(conn)), {"experiment": experiment}
    )[0]
    if not assigned and not exposed:
        raise UnknownExperiment(
            f"unknown experiment {experiment!r}: no exposure or assignment in the warehouse "
            "(see `eventpipe experiments list`)"
        )
    return first


def variant_counts(
    conn: Any, schema: str, experiment: str, goal: str, key: str = sqlbuild.PERSON
) -> list[VariantCounts]:
    """Per variant: persons and converters (``key=sqlbuild.RAW``: raw ids instead)."""
    query = sqlbuild.variant_counts(schema, _EXPERIMENT, sqlbuild.GOAL_PARAM, key, dialect_of(conn))
    rows = _rows(conn, query, {"experiment": experiment, "goal": goal})
    return [VariantCounts(variant, int(users), int(converters)) for variant, users, converters, _ in rows]


def daily_users(conn: Any, schema: str) -> list[tuple[date, int, int]]:
    """``(day, persons, raw ids)`` engaged per day: what stitching changes in DAU."""
    _require(conn, schema, "events", "identities")
    return [
        (day, int(persons), int(raw))
        for day, persons, raw in _rows(conn, sqlbuild.daily_users(schema, dialect_of(conn)))
    ]


def multi_exposure(conn: Any, schema: str, experiment: str) -> MultiExposure:
    query = sqlbuild.multi_exposure(schema, _EXPERIMENT, dialect_of(conn))
    multi, exposed = _rows(conn, query, {"experiment": experiment})[0]
    return MultiExposure(int(multi), int(exposed))


def experiments(conn: Any, schema: str) -> list[ExperimentSummary]:
    _require(conn, schema, "events", "identities")
    return [
        ExperimentSummary(exp, _variants(variants), int(n), int(users), first, last)
        for exp, variants, n, users, first, last in _rows(
            conn, sqlbuild.experiment_list(schema, dialect_of(conn))
        )
    ]


def _variants(found: Any) -> list[str]:
    """An array (PostgreSQL), or Redshift's LISTAGG text joined by ``VARIANT_SEPARATOR``."""
    return found.split(sqlbuild.VARIANT_SEPARATOR) if isinstance(found, str) else list(found)


def load_facts(conn: Any, schema: str) -> LoadFacts:
    newest_received = newest_loaded = loaded = None
    final: set[date] | None = None
    if has_table(conn, schema, "freshness"):  # the loader's watermark: no scan of events
        newest_received = _rows(conn, statesql.newest_received_watermark(schema))[0][0]
    if newest_received is None and has_table(conn, schema, "events"):
        newest_received = _rows(conn, statesql.newest_received(schema))[0][0]
    if has_table(conn, schema, "load_ledger"):
        newest_loaded, loaded = _rows(conn, statesql.ledger_summary(schema))[0]
    if has_table(conn, schema, "day_status"):
        final = {row[0] for row in _rows(conn, statesql.final_days(schema))}
    return LoadFacts(newest_received, newest_loaded, loaded, final)
