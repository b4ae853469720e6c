"""Use cases: the report and the status, wiring the warehouse adapter to the pure core.

The connection and ``now`` come from the caller (the CLI, a test), never from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from eventpipe.errors import WarehouseError
from eventpipe.reports import probes
from eventpipe.reports import warehouse as wh
from eventpipe.reports.analysis import MIN_USERS, Report, build_report
from eventpipe.reports.freshness import (
    LoadFacts,
    StageStatus,
    Status,
    data_warnings,
    day_states,
    loader_stage,
    nightly_stage,
)
from eventpipe.settings import Settings


def experiment_report(
    conn: Any,
    schema: str,
    experiment: str,
    goal: str,
    now: datetime,
    control: str = "control",
    weights: Mapping[str, float] | None = None,
    min_users: int = MIN_USERS,
    stale_minutes: float = 10.0,
) -> Report:
    """Raises ``UnknownExperiment``/``UnknownVariant``/``ReportError``, ``WarehouseError``."""
    since = wh.experiment_start(conn, schema, experiment)
    counts = wh.variant_counts(conn, schema, experiment, goal)
    multi = wh.multi_exposure(conn, schema, experiment)
    facts = wh.load_facts(conn, schema)
    return build_report(
        experiment,
        goal,
        counts,
        control=control,
        weights=weights,
        min_users=min_users,
        multi_exposure=multi,
        extra_warnings=data_warnings(facts, now, stale_minutes, since),
    )


def status(settings: Settings, s3: Any, now: datetime, stale_minutes: float, days: int = 7) -> Status:
    """Every stage's state; ``s3`` is the S3 client the raw archive is probed with."""
    stages = [
        probes.ingest(settings),
        probes.kafka_lag(settings),
        probes.service_up("stream", settings.stream_web_port),
        probes.s3_raw(settings, s3, now, stale_minutes),
    ]
    facts: LoadFacts | None = None
    try:
        with wh.connect(settings) as conn:
            facts = wh.load_facts(conn, settings.warehouse_schema)
    except WarehouseError as exc:
        stages.append(probes.warehouse_error(exc))
    host = settings.loader_host if settings.loader_host not in ("0.0.0.0", "::") else "127.0.0.1"
    loader_service = probes.service_up("loader", settings.loader_port, host)
    if facts is None:
        stages.append(loader_service)
        return Status(stages, [])
    loader = loader_stage(facts, now, stale_minutes)
    if loader_service.state != "ok":
        loader = StageStatus("loader", loader.state, f"service not running; {loader.detail}")
    stages.append(loader)
    stages.append(nightly_stage(facts, now.date(), settings.reprocess_lateness_days))
    first = date.fromordinal(now.date().toordinal() - (days - 1))
    return Status(stages, day_states(first, now.date(), facts.final_days))
