"""One day's reprocess end to end: lock, snapshot, inputs, job, corrections, replacement.

Every step is repeatable: the job is a pure function of the raw archive and the snapshot,
the correction objects are deterministic (same rows, same bytes), and the replacement is
one transaction computed from them -- so a crash anywhere is repaired by running the day
again. The dialect's day lock (an advisory lock on PostgreSQL, a lock row owned by a live
session on Redshift) keeps two runs of the same day (CLI and scheduler, or two loader
replicas) from overlapping; it dies with the session.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import CollectorRegistry

from eventpipe.errors import EventpipeError, StorageError
from eventpipe.keys import corrections_key, cut_agg_key
from eventpipe.loader.dialects import Dialect
from eventpipe.loader.reprocess.corrupt import CorruptInputs, account, settle_corrupt
from eventpipe.loader.reprocess.engines import Corrections, engine_for
from eventpipe.loader.reprocess.finalize import Drift, replace_day
from eventpipe.loader.reprocess.inputs import (
    Inputs,
    download_inputs,
    export_identities,
    export_snapshot,
    raw_objects,
    s3_inputs,
)
from eventpipe.loader.reprocess.metrics import ReprocessMetrics, reprocess_metrics
from eventpipe.loader.reprocess.rows import DAILY_TABLES, TABLES, window
from eventpipe.loader.warehouse import Warehouse, held_day_lock, quarantined_keys
from eventpipe.s3 import gzip_json_rows
from eventpipe.settings import Settings

log = logging.getLogger("eventpipe.loader.reprocess")
# how long a run waits for the loader to quarantine a corrupt raw object it has not decided
# on yet (its S3 listing runs every 30 s): after that the run fails, naming the objects
QUARANTINE_WAIT_S = 90.0
QUARANTINE_POLL_S = 5.0


class ReprocessBusy(EventpipeError):
    """Another run holds the day's lock; nothing was done."""


@dataclass
class ReprocessAdapters:
    """What a run uses (``eventpipe.bootstrap.build_reprocess`` makes the real ones)."""

    s3: Any  # a boto3 S3 client: the raw archive, the corrections
    dialect: Dialect
    warehouse: Callable[[str], Warehouse]  # application_name -> a session of the run's own


@dataclass
class DayResult:
    day: date
    lateness_days: int
    runner: str
    objects: int
    input_lines: int
    snapshot_rows: int
    rows: dict[str, int]
    drift: Drift
    corrections: list[str]
    duration_s: float
    skipped: list[dict[str, str]]  # raw objects left out: the loader quarantined them
    engine: str = "mrjob"  # which engine ran the job (engines.ENGINES)


@contextmanager
def day_lock(settings: Settings, day: date, dialect: Dialect) -> Iterator[None]:
    """Hold the nightly job's lock of ``day``; ``ReprocessBusy`` if another run holds it."""
    with held_day_lock(settings, dialect, day) as held:
        if not held:
            raise ReprocessBusy(f"day {day} is being reprocessed by another run")
        yield


def write_corrections(client: Any, settings: Settings, day: date, corrections: Corrections) -> dict[str, str]:
    """``corrections/dt=D/<table>.jsonl.gz`` (deterministic bytes); table -> key."""
    keys = {}
    for table in TABLES:
        key = settings.s3_prefix + corrections_key(day, table)
        body = gzip_json_rows(corrections.get(table, []))
        client.put_object(Bucket=settings.s3_bucket, Key=key, Body=body, ContentType="application/x-ndjson")
        keys[table] = key
    return keys


def _gather(
    settings: Settings,
    wh: Warehouse,
    client: Any,
    day: date,
    lateness: int,
    runner: str,
    tmp: Path,
    progress: bool,
) -> Inputs:
    schema = settings.warehouse_schema
    try:
        objects = raw_objects(client, settings, window(day, lateness))
        keys = [obj["Key"] for obj in objects]
        quarantined = wh.run(lambda conn: quarantined_keys(conn, schema, keys))
        if runner in ("inline", "local"):
            inputs = download_inputs(client, settings, objects, tmp, day, progress, quarantined)
        else:
            inputs = s3_inputs(settings, objects, quarantined)
        inputs.listed = keys
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(f"reading the raw archive for {day} failed: {exc}") from exc
    return inputs


def _run(
    settings: Settings,
    day: date,
    lateness: int,
    runner: str,
    tmp: Path,
    progress: bool,
    metrics: ReprocessMetrics,
    wait_s: float,
    engine: str,
    adapters: ReprocessAdapters,
) -> DayResult:
    started = time.monotonic()
    job = engine_for(settings, engine, runner)  # before any work: a bad combination fails at once
    wh, client = adapters.warehouse("eventpipe-reprocess"), adapters.s3
    try:
        snapshot = tmp / "assignments.jsonl"
        schema = settings.warehouse_schema
        snapshot_rows = wh.run(lambda conn: export_snapshot(conn, schema, day, snapshot))
        identities = tmp / "identities.jsonl"
        wh.run(lambda conn: export_identities(conn, schema, identities))
        inputs = _gather(settings, wh, client, day, lateness, runner, tmp, progress)
        loaded = settle_corrupt(wh, day, inputs, wait_s, QUARANTINE_POLL_S)
        account(metrics, day, inputs)
        if inputs.corrupt:
            raise CorruptInputs(day, inputs.corrupt, loaded)
        corrections: Corrections = {t: [] for t in TABLES}
        if inputs.paths:
            paths = [*inputs.paths, str(snapshot), str(identities)]
            corrections = job.run(day, paths, tmp)
        try:
            keys = write_corrections(client, settings, day, corrections)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"writing corrections for {day} failed: {exc}") from exc
        # the watermark: every delta cut with a listed raw object is inside the final rows
        contained = [k for raw in inputs.listed for t in DAILY_TABLES if (k := cut_agg_key(raw, t))]
        drift = wh.run(
            lambda conn: replace_day(
                conn, wh.dialect, schema, day, lateness, corrections, keys, contained, len(inputs.listed)
            )
        )
    finally:
        wh.close()
    return DayResult(
        day, lateness, runner, inputs.objects, inputs.lines, snapshot_rows,
        {t: len(rows) for t, rows in corrections.items()}, drift, list(keys.values()),
        time.monotonic() - started, [o.as_dict() for o in inputs.skipped], engine,
    )  # fmt: skip


def run_day(
    settings: Settings,
    day: date,
    lateness_days: int | None = None,
    runner: str | None = None,
    *,
    registry: CollectorRegistry | None = None,
    progress: bool = False,
    quarantine_wait_s: float = QUARANTINE_WAIT_S,
    engine: str | None = None,
    adapters: ReprocessAdapters,
) -> DayResult:
    """Reprocess ``day`` and make it final; raises ``ReprocessBusy`` if it is already running,
    ``CorruptInputs`` (nothing written) if a raw object of its window is corrupt and not
    quarantined by the loader after ``quarantine_wait_s``. ``adapters``: what
    ``eventpipe.bootstrap.build_reprocess`` built (S3, dialect, warehouse sessions)."""
    lateness = settings.reprocess_lateness_days if lateness_days is None else lateness_days
    runner = runner or settings.reprocess_runner
    engine = engine or settings.reprocess_engine
    metrics = reprocess_metrics(registry)
    context = {"day": day.isoformat(), "lateness_days": lateness, "runner": runner, "engine": engine}
    try:
        with (
            day_lock(settings, day, adapters.dialect),
            tempfile.TemporaryDirectory(prefix="ep-reprocess-") as tmp,
        ):
            log.info("reprocess started", extra=context)
            result = _run(
                settings,
                day,
                lateness,
                runner,
                Path(tmp),
                progress,
                metrics,
                quarantine_wait_s,
                engine,
                adapters,
            )
    except ReprocessBusy:
        raise
    except Exception:
        metrics.failures.inc()
        log.exception("reprocess failed", extra=context)
        raise
    metrics.duration.observe(result.duration_s)
    metrics.last_success.set(time.time())
    metrics.last_day.set(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
    metrics.events.set(result.input_lines)
    metrics.record_drift(result.drift)
    log.info(
        "reprocess done",
        extra={**context, "duration_s": round(result.duration_s, 3), "objects": result.objects,
               "input_lines": result.input_lines, "rows": result.rows, "drift": result.drift,
               "skipped_objects": len(result.skipped)},
    )  # fmt: skip
    return result
