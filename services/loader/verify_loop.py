"""The loader checks its own numbers: ``eventpipe verify`` of the current day every
``verify_interval_s`` and of each day the nightly made final, exported as
``eventpipe_verify_rows_differing{table,day_state}`` (docs/metrics.md).

Bounded: one day per check (the day's events by timestamp, plus the exposures before its
end for assignments), read-only, in a background thread so loads never wait for it; a
check never overlaps the previous one. A failed check is logged and leaves the gauge as it
was (the warehouse-down alerts cover that case).

Settling: a cut's raw events and its aggregate deltas load in separate transactions, so a
check can land between them. A check that finds differences therefore looks again after
``confirm_after_s`` and reports only the rows that differ both times.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Gauge

from eventpipe.loader.verify import Verification, verify_day
from eventpipe.loader.warehouse import Warehouse
from eventpipe.settings import Settings
from eventpipe.timeutil import utcnow

log = logging.getLogger("eventpipe.loader.verify")
_GAUGES: dict[int, Gauge] = {}


def verify_gauge(registry: CollectorRegistry | None = None) -> Gauge:
    """``eventpipe_verify_rows_differing``, created once per registry (never at import)."""
    registry = registry or REGISTRY
    if id(registry) not in _GAUGES:
        _GAUGES[id(registry)] = Gauge(
            "eventpipe_verify_rows_differing",
            "aggregate rows of the last verified day that differ from the definitions applied to events",
            ["table", "day_state"],
            registry=registry,
        )
    return _GAUGES[id(registry)]


def export(result: Verification, registry: CollectorRegistry | None = None) -> None:
    gauge = verify_gauge(registry)
    for table, rows in result.differing.items():
        gauge.labels(table=table, day_state=result.day_state).set(len(rows))


def confirmed(first: Verification, second: Verification) -> Verification:
    """``second`` restricted to the rows (by key) that also differed in ``first``."""
    seen = {t: {tuple(r.key.values()) for r in rows} for t, rows in first.differing.items()}
    kept = {
        t: [r for r in rows if tuple(r.key.values()) in seen.get(t, set())]
        for t, rows in second.differing.items()
    }
    return Verification(second.day, second.day_state, kept)


def verify_and_export(
    settings: Settings,
    day: date,
    registry: CollectorRegistry | None = None,
    confirm_after_s: float = 0.0,
    *,
    warehouse: Callable[[str], Warehouse],
) -> Verification:
    """Verify ``day`` on a session of its own (``warehouse``: application_name -> Warehouse,
    from the composition root: ``eventpipe.bootstrap.warehouse_factory``) and export the gauges."""
    wh = warehouse("eventpipe-verify")
    try:
        result = wh.run(lambda conn: verify_day(conn, wh.dialect, wh.schema, day))
        if not result.ok and confirm_after_s > 0:
            time.sleep(confirm_after_s)
            again = wh.run(lambda conn: verify_day(conn, wh.dialect, wh.schema, day))
            result = confirmed(result, again)
    finally:
        wh.close()
    export(result, registry)
    counts = {table: len(rows) for table, rows in result.differing.items()}
    level = logging.INFO if result.ok else logging.WARNING
    log.log(
        level,
        "verify done",
        extra={"day": day.isoformat(), "day_state": result.day_state, "differing": counts},
    )
    return result


class DayVerifier:
    """``tick()`` from the loader's loop (never blocks): the current day every
    ``verify_interval_s`` (0: off); ``final_day(result)`` after each nightly run."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], datetime] = utcnow,
        confirm_after_s: float = 30.0,
        warehouse: Callable[[str], Warehouse],
    ) -> None:
        self.settings, self.registry, self.clock = settings, registry, clock
        self.confirm_after_s, self.warehouse = confirm_after_s, warehouse
        self._thread: threading.Thread | None = None
        self._next = 0.0

    def tick(self) -> bool:
        """Start a check of the current day if one is due and none is running."""
        interval = self.settings.verify_interval_s
        if interval <= 0 or time.monotonic() < self._next:
            return False
        if self._thread is not None and self._thread.is_alive():
            return False
        self._next = time.monotonic() + interval
        self._thread = threading.Thread(target=self._check, args=(self.clock().date(),), daemon=True)
        self._thread.name = "verify"
        self._thread.start()
        return True

    def final_day(self, result: Any) -> None:
        """After the nightly made ``result.day`` final (runs on the nightly's thread)."""
        self._check(result.day)

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _check(self, day: date) -> None:
        try:
            verify_and_export(
                self.settings, day, self.registry, self.confirm_after_s, warehouse=self.warehouse
            )
        except Exception:  # the next tick tries again; the gauge keeps its last value
            log.exception("verify failed", extra={"day": day.isoformat()})
