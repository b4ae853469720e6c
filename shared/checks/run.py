"""Run the data tests: Soda Core scans the warehouse with the SodaCL files of ``sodacl/``
(and any ``extra`` files or folders), dbt builds the project of ``dbt/`` (models and their
tests, ``eventpipe.checks.dbt_run``); the outcome is recorded in ``check_results`` and
exported as Prometheus metrics. Used by ``eventpipe checks run`` and by the loader after
each nightly reprocess (``after_nightly``).

Soda is told the day under test as ``${DATE}`` and, for freshness, ``${NOW}``: the end of
that day, or the run's time if earlier. Its anonymous usage statistics are switched off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from prometheus_client import REGISTRY, CollectorRegistry, Gauge

from eventpipe.checks.results import CheckResult, failed
from eventpipe.loader.connection import dsn_parts
from eventpipe.loader.dialects.checks import insert_result
from eventpipe.settings import Settings
from eventpipe.timeutil import utcnow

if TYPE_CHECKING:
    from eventpipe.bootstrap import WarehouseFactory

log = logging.getLogger("eventpipe.checks")
SODACL = Path(__file__).parent / "sodacl"
DATA_SOURCE = "eventpipe"


@dataclass
class CheckRun:
    day: date
    run_at: datetime
    rows: list[CheckResult]
    errors: list[str] = field(default_factory=list)


def data_source(dsn: str, schema: str, dialect: str) -> str:
    """Soda's configuration YAML for the warehouse (``redshift`` needs soda-core-redshift)."""
    parts = dsn_parts(dsn)
    config = {
        "type": "redshift" if dialect == "redshift" else "postgres",
        "host": parts.get("host", "127.0.0.1"),
        "port": str(parts.get("port", "5439" if dialect == "redshift" else "5432")),
        "username": parts.get("user", ""),
        "password": parts.get("password", ""),
        "database": parts.get("dbname", ""),
        "schema": schema,
    }
    return yaml.safe_dump({f"data_source {DATA_SOURCE}": config})


def freshness_now(day: date, run_at: datetime) -> datetime:
    return min(run_at, datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC))


def scan(settings: Settings, day: date, run_at: datetime, extra: Sequence[Path] = ()) -> CheckRun:
    from soda.scan import Scan  # heavy: only when checks run

    from eventpipe.checks.results import from_scan

    soda = Scan()
    soda.disable_telemetry()
    soda.set_data_source_name(DATA_SOURCE)
    soda.set_scan_definition_name("eventpipe_checks")
    soda.add_configuration_yaml_str(
        data_source(settings.warehouse_dsn, settings.warehouse_schema, settings.warehouse_dialect)
    )
    soda.add_variables({"DATE": day.isoformat(), "NOW": freshness_now(day, run_at).isoformat()})
    for path in (SODACL, *extra):
        if path.is_dir():
            soda.add_sodacl_yaml_files(str(path))
        else:
            soda.add_sodacl_yaml_file(str(path))
    try:
        soda.execute()
    finally:
        _close_connections(soda)
    errors = [str(entry.message) for entry in soda.get_error_logs()]
    return CheckRun(day, run_at, from_scan(soda.get_scan_results()), errors)


def run_all(settings: Settings, day: date, run_at: datetime, extra: Sequence[Path] = ()) -> CheckRun:
    """Every data test of ``day``: the SodaCL checks, then the dbt project's (one row list)."""
    from eventpipe.checks.dbt_run import build

    run = scan(settings, day, run_at, extra)
    dbt = build(settings, day, freshness_now(day, run_at))
    run.rows = sorted(run.rows + dbt.rows, key=lambda r: (r.dataset, r.check))
    run.errors += dbt.errors
    return run


def _close_connections(soda: Any) -> None:
    """Soda Core 3.5.6 closes only named connections: the data source's own one stays open,
    idle in a transaction that holds locks (a DROP SCHEMA then waits forever). Close it."""
    for source in soda._data_source_manager.data_sources.values():
        if source.connection is not None:
            source.connection.close()
            source.connection = None


def record(conn: Any, schema: str, run: CheckRun) -> None:
    """One row per check in ``check_results`` (migration 6), in one transaction."""
    with conn, conn.cursor() as cur:
        for r in run.rows:
            cur.execute(
                insert_result(schema),
                (run.run_at, run.day, r.dataset[:256], r.check[:1024], r.outcome, r.value),
            )


_GAUGES: dict[int, tuple[Gauge, Gauge, Gauge]] = {}


def gauges(registry: CollectorRegistry | None = None) -> tuple[Gauge, Gauge, Gauge]:
    """Created once per registry (never at import)."""
    registry = registry or REGISTRY
    if id(registry) not in _GAUGES:
        r = registry
        _GAUGES[id(registry)] = (
            Gauge("eventpipe_checks_failed", "checks failed or not run, last run", registry=r),
            Gauge("eventpipe_check_failing", "1: this check failed, last run", ["dataset", "check"],
                  registry=r),
            Gauge("eventpipe_checks_last_run_timestamp_seconds", "when the data checks last ran", registry=r),
        )  # fmt: skip
    return _GAUGES[id(registry)]


def export(run: CheckRun, registry: CollectorRegistry | None = None) -> None:
    total, each, last = gauges(registry)
    total.set(len(failed(run.rows)) + (1 if run.errors and not failed(run.rows) else 0))
    for r in run.rows:
        each.labels(dataset=r.dataset, check=r.check).set(0 if r.ok else 1)
    last.set(run.run_at.timestamp())


def run_and_record(
    settings: Settings, day: date, warehouse: WarehouseFactory, registry: CollectorRegistry | None = None
) -> CheckRun:
    """Scan ``day``, record the results on a session of ``warehouse`` (application name ->
    ``Warehouse``: ``eventpipe.bootstrap.warehouse_factory``), export the gauges."""
    run = run_all(settings, day, utcnow())
    wh = warehouse("eventpipe-checks")
    try:
        wh.run(lambda conn: record(conn, wh.schema, run))
    finally:
        wh.close()
    export(run, registry)
    log.log(
        logging.INFO if not failed(run.rows) and not run.errors else logging.WARNING,
        "checks done",
        extra={"day": day.isoformat(), "checks": len(run.rows), "failed": len(failed(run.rows))},
    )
    return run


def after_nightly(
    settings: Settings, warehouse: WarehouseFactory, registry: CollectorRegistry | None = None
) -> Callable[[Any], None]:
    """For the nightly scheduler: run the checks of each day it made final (never raises)."""

    def check(result: Any) -> None:
        try:
            run_and_record(settings, result.day, warehouse, registry)
        except Exception:  # the nightly goes on; the log says why the checks did not run
            log.exception("checks failed to run", extra={"day": result.day.isoformat()})

    return check
