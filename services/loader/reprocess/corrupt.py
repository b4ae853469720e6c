"""Raw objects the nightly job refuses as corrupt: skipped once the loader has quarantined
them, else the day is not made final (``CorruptInputs``); each is logged and counted."""

from __future__ import annotations

import logging
import time
from datetime import date
from functools import partial
from typing import Any

from eventpipe.errors import EventpipeError
from eventpipe.loader.reprocess.inputs import QUARANTINED, Inputs, SkippedObject
from eventpipe.loader.reprocess.metrics import ReprocessMetrics
from eventpipe.loader.warehouse import Warehouse, loaded_keys, quarantined_keys

log = logging.getLogger("eventpipe.loader.reprocess")


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


def _quarantined(conn: Any, schema: str, keys: list[str]) -> set[str]:
    return quarantined_keys(conn, schema, keys)


def _loaded(conn: Any, schema: str, keys: list[str]) -> set[str]:
    return loaded_keys(conn, schema, keys)


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
        for key in wh.run(partial(_quarantined, schema=schema, keys=keys)):
            inputs.skipped.append(SkippedObject(key, QUARANTINED, pending.pop(key).detail))
        if not pending:
            break
        keys = sorted(pending)
        loaded = wh.run(partial(_loaded, schema=schema, keys=keys))
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


def account(metrics: ReprocessMetrics, day: date, inputs: Inputs) -> None:
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
