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
from eventpipe.keys import corrections_key, cut_agg_key
from eventpipe.loader.reprocess.engines import Corrections, engine_for
from eventpipe.loader.reprocess.finalize import Drift, replace_day
from eventpipe.loader.reprocess.inputs import (
    QUARANTINED,
    Inputs,
    SkippedObject,
    download_inputs,
    export_identities,
    export_snapshot,
    raw_objects,
    s3_inputs,
)
from eventpipe.loader.reprocess.metrics import ReprocessMetrics, reprocess_metrics
from eventpipe.loader.reprocess.rows import DAILY_TABLES, TABLES, window
from eventpipe.loader.warehouse import Warehouse, connect, loaded_keys, quarantined_keys
from eventpipe.s3 import gzip_json_rows, s3_client
from eventpipe.settings import Settings

log = logging.getLogger("eventpipe.loader.reprocess")
# how long a run waits for the loader to quarantine a corrupt raw object it has not decided
# on yet (its S3 listing runs every 30 s): after that the run fails, naming the objects
QUARANTINE_WAIT_S = 90.0
QUARANTINE_POLL_S = 5.0


class ReprocessBusy(EventpipeError):
    """Another run holds the day's lock; nothing was done."""


class CorruptInputs(EventpipeError):
    """Raw objects of the window the loader would refuse but has not quarantined: the day is
    not made final with data the warehouse may yet load (or never will); nothing was written."""

    def __init__(self, day: date, corrupt: list[SkippedObject], loaded: set[str]) -> None:
        listed = "; ".join(f"{o.key} ({o.reason}: {o.detail})" for o in corrupt)
        text = (
            f"day {day} not made final: {len(corrupt)} raw object(s) of its window are corrupt and not "
            f"in the loader's quarantine table: {listed}. Quarantine each (a running loader does within "
            "one S3 listing; by hand: docs/reprocess.md 'Corrupt raw objects') or repair it, then rerun."
        )
        if loaded:
            text += (
                f" {len(loaded)} of them are in the load ledger: the warehouse loaded lines the job "
                f"refuses, so the two line checks disagree (a bug in eventpipe.loader.reprocess.lines): "
                f"{', '.join(sorted(loaded))}"
            )
        super().__init__(text)
        self.day, self.corrupt, self.loaded = day, corrupt, loaded


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


def _gather(
    settings: Settings, wh: Warehouse, day: date, lateness: int, runner: str, tmp: Path, progress: bool
) -> tuple[Any, Inputs]:
    client = s3_client(settings)
    schema = settings.warehouse_schema
    try:
        objects = raw_objects(client, settings, window(day, lateness))
        keys = [obj["Key"] for obj in objects]
        quarantined = wh.run(lambda conn: quarantined_keys(conn, schema, keys))
        if runner in ("inline", "local"):
            inputs = download_inputs(client, settings, objects, tmp, progress, quarantined)
        else:
            inputs = s3_inputs(settings, objects, quarantined)
        inputs.listed = keys
    except (BotoCoreError, ClientError) as exc:
        raise StorageError(f"reading the raw archive for {day} failed: {exc}") from exc
    return client, inputs


def settle_corrupt(wh: Warehouse, day: date, inputs: Inputs, wait_s: float, poll_s: float) -> set[str]:
    """Objects the job refused: skipped once the loader has quarantined them -- it may not
    have seen them yet, so wait up to ``wait_s`` -- else ``CorruptInputs``. At once if one
    is in the load ledger (the two line checks disagree: waiting cannot help). Returns the
    still-corrupt keys the ledger holds."""
    schema = wh.schema
    pending = {o.key: o for o in inputs.corrupt}
    deadline = time.monotonic() + wait_s
    loaded: set[str] = set()
    while pending:
        keys = sorted(pending)
        for key in wh.run(lambda conn, keys=keys: quarantined_keys(conn, schema, keys)):
            inputs.skipped.append(SkippedObject(key, QUARANTINED, pending.pop(key).detail))
        if not pending:
            break
        keys = sorted(pending)
        loaded = wh.run(lambda conn, keys=keys: loaded_keys(conn, schema, keys))
        left = deadline - time.monotonic()
        if loaded or left <= 0:
            break
        log.warning(
            "corrupt raw objects not quarantined yet: waiting for the loader",
            extra={"day": day.isoformat(), "keys": sorted(pending), "wait_s": round(left, 1)},
        )
        time.sleep(min(poll_s, left))
    inputs.corrupt = list(pending.values())
    return loaded if pending else set()


def _account(metrics: ReprocessMetrics, day: date, inputs: Inputs) -> None:
    """A log line and a count per object left out (JSON logs: key, reason, detail)."""
    for o in inputs.skipped:
        metrics.skipped_objects.labels(QUARANTINED).inc()
        log.warning(
            "raw object skipped: quarantined by the loader",
            extra={"day": day.isoformat(), "key": o.key, "reason": o.reason, "detail": o.detail},
        )
    for o in inputs.corrupt:
        metrics.skipped_objects.labels(o.reason).inc()
        log.error(
            "corrupt raw object not quarantined: the day is not made final",
            extra={"day": day.isoformat(), "key": o.key, "reason": o.reason, "detail": o.detail},
        )


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
) -> DayResult:
    started = time.monotonic()
    job = engine_for(settings, engine, runner)  # before any work: a bad combination fails at once
    wh = Warehouse(settings, application_name="eventpipe-reprocess")
    try:
        snapshot = tmp / "assignments.jsonl"
        schema = settings.warehouse_schema
        snapshot_rows = wh.run(lambda conn: export_snapshot(conn, schema, day, snapshot))
        identities = tmp / "identities.jsonl"
        wh.run(lambda conn: export_identities(conn, schema, identities))
        client, inputs = _gather(settings, wh, day, lateness, runner, tmp, progress)
        loaded = settle_corrupt(wh, day, inputs, wait_s, QUARANTINE_POLL_S)
        _account(metrics, day, inputs)
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
) -> DayResult:
    """Reprocess ``day`` and make it final; raises ``ReprocessBusy`` if it is already running,
    ``CorruptInputs`` (nothing written) if a raw object of its window is corrupt and not
    quarantined by the loader after ``quarantine_wait_s``."""
    lateness = settings.reprocess_lateness_days if lateness_days is None else lateness_days
    runner = runner or settings.reprocess_runner
    engine = engine or settings.reprocess_engine
    metrics = reprocess_metrics(registry)
    context = {"day": day.isoformat(), "lateness_days": lateness, "runner": runner, "engine": engine}
    try:
        with day_lock(settings, day), tempfile.TemporaryDirectory(prefix="ep-reprocess-") as tmp:
            log.info("reprocess started", extra=context)
            result = _run(
                settings, day, lateness, runner, Path(tmp), progress, metrics, quarantine_wait_s, engine
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
