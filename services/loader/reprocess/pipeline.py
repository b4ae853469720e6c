"""One day's reprocess end to end: lock, snapshot, inputs, job, corrections, replacement.

Every step is repeatable: the job is a pure function of the raw archive and the snapshot,
the correction objects are deterministic (same rows, same bytes), and the replacement is
one transaction computed from them -- so a crash anywhere is repaired by running the day
again. A PostgreSQL advisory lock keyed by (schema, day) keeps two runs of the same day
(CLI and scheduler, or two loader replicas) from overlapping; it dies with the session.
"""

from __future__ import annotations

import logging
import tempfile
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from prometheus_client import CollectorRegistry

from eventpipe.errors import EventpipeError, StorageError
from eventpipe.keys import corrections_key
from eventpipe.loader.reprocess.finalize import Drift, replace_day
from eventpipe.loader.reprocess.inputs import (
    download_inputs,
    export_snapshot,
    raw_objects,
    s3_inputs,
)
from eventpipe.loader.reprocess.metrics import reprocess_metrics
from eventpipe.loader.reprocess.rows import TABLES, window
from eventpipe.loader.reprocess.runjob import Corrections, job_args, run_job
from eventpipe.loader.warehouse import Warehouse, connect
from eventpipe.s3 import gzip_json_rows, s3_client
from eventpipe.settings import Settings

log = logging.getLogger("eventpipe.loader.reprocess")


class ReprocessBusy(EventpipeError):
    """Another run holds the day's lock; nothing was done."""


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


def lock_ids(schema: str, day: date) -> tuple[int, int]:
    """The advisory lock's two int4 keys: a namespace per warehouse schema, and the day."""
    return zlib.crc32(f"eventpipe.reprocess:{schema}".encode()) - 2**31, day.toordinal()


@contextmanager
def day_lock(settings: Settings, day: date) -> Iterator[None]:
    conn = connect(settings, "eventpipe-reprocess-lock")
    conn.autocommit = True
    ids = lock_ids(settings.warehouse_schema, day)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s, %s)", ids)
            if not cur.fetchone()[0]:
                raise ReprocessBusy(f"day {day} is being reprocessed by another run")
            try:
                yield
            finally:
                cur.execute("SELECT pg_advisory_unlock(%s, %s)", ids)
    finally:
        conn.close()


def write_corrections(client: Any, settings: Settings, day: date, corrections: Corrections) -> dict[str, str]:
    """``corrections/dt=D/<table>.jsonl.gz`` (deterministic bytes); table -> key."""
    keys = {}
    for table in TABLES:
        key = settings.s3_prefix + corrections_key(day, table)
        body = gzip_json_rows(corrections.get(table, []))
        client.put_object(Bucket=settings.s3_bucket, Key=key, Body=body, ContentType="application/x-ndjson")
        keys[table] = key
    return keys


def _gather(settings: Settings, day: date, lateness: int, runner: str, tmp: Path, progress: bool) -> Any:
    client = s3_client(settings)
    try:
        objects = raw_objects(client, settings, window(day, lateness))
        if runner in ("inline", "local"):
            inputs = download_inputs(client, settings, objects, tmp, progress)
        else:
            inputs = s3_inputs(settings, objects)
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(f"reading the raw archive for {day} failed: {exc}") from exc
    return client, inputs


def _run(settings: Settings, day: date, lateness: int, runner: str, tmp: Path, progress: bool) -> DayResult:
    started = time.monotonic()
    wh = Warehouse(settings, application_name="eventpipe-reprocess")
    try:
        snapshot = tmp / "assignments.jsonl"
        schema = settings.warehouse_schema
        snapshot_rows = wh.run(lambda conn: export_snapshot(conn, schema, day, snapshot))
        client, inputs = _gather(settings, day, lateness, runner, tmp, progress)
        corrections: Corrections = {t: [] for t in TABLES}
        if inputs.paths:
            corrections = run_job(job_args(settings, day, runner, tmp), [*inputs.paths, str(snapshot)])
        try:
            keys = write_corrections(client, settings, day, corrections)
        except (BotoCoreError, ClientError) as exc:
            raise StorageError(f"writing corrections for {day} failed: {exc}") from exc
        drift = wh.run(lambda conn: replace_day(conn, wh.dialect, schema, day, lateness, corrections, keys))
    finally:
        wh.close()
    return DayResult(
        day, lateness, runner, inputs.objects, inputs.lines, snapshot_rows,
        {t: len(rows) for t, rows in corrections.items()}, drift, list(keys.values()),
        time.monotonic() - started,
    )  # fmt: skip


def run_day(
    settings: Settings,
    day: date,
    lateness_days: int | None = None,
    runner: str | None = None,
    *,
    registry: CollectorRegistry | None = None,
    progress: bool = False,
) -> DayResult:
    """Reprocess ``day`` and make it final; raises ``ReprocessBusy`` if it is already running."""
    lateness = settings.reprocess_lateness_days if lateness_days is None else lateness_days
    runner = runner or settings.reprocess_runner
    metrics = reprocess_metrics(registry)
    context = {"day": day.isoformat(), "lateness_days": lateness, "runner": runner}
    try:
        with day_lock(settings, day), tempfile.TemporaryDirectory(prefix="ep-reprocess-") as tmp:
            log.info("reprocess started", extra=context)
            result = _run(settings, day, lateness, runner, Path(tmp), progress)
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
               "input_lines": result.input_lines, "rows": result.rows, "drift": result.drift},
    )  # fmt: skip
    return result
