"""Nightly scheduling: which closed days are due, run one at a time, off the loader's loop.

Day D is due once D+L has ended and the clock is past ``reprocess_hour_utc`` of the next
day (the margin lets the last raw objects of D+L land in S3), i.e. at
``D + L + 1 day + hour``. Days within ``reprocess_lookback_days`` of the newest due day
that are not final yet are run, oldest first (an earlier day's assignments feed the next
day's snapshot); the first failure stops the round and the next round retries it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry

from eventpipe.loader.dialects import Statement
from eventpipe.loader.dialects.bookkeeping import day_status_since, touched_before
from eventpipe.loader.reprocess.metrics import reprocess_metrics
from eventpipe.loader.reprocess.pipeline import DayResult, ReprocessAdapters, ReprocessBusy, run_day
from eventpipe.settings import Settings
from eventpipe.timeutil import utcnow

log = logging.getLogger("eventpipe.loader.reprocess")


def newest_due_day(now: datetime, lateness_days: int, hour_utc: int) -> date:
    return (now - timedelta(hours=hour_utc)).date() - timedelta(days=lateness_days + 1)


def last_nightly(now: datetime, hour_utc: int) -> datetime:
    """The most recent ``hour_utc`` o'clock at or before ``now``."""
    today = now.replace(hour=hour_utc, minute=0, second=0, microsecond=0)
    return today if today <= now else today - timedelta(days=1)


def touched_lateness(day: date, touched_received_day: date | None, lateness_days: int) -> int:
    """The lateness a rerun of a touched day needs to read every delta that touched it."""
    if touched_received_day is None:
        return lateness_days
    return max(lateness_days, (touched_received_day - day).days)


def candidate_days(now: datetime, lateness_days: int, hour_utc: int, lookback_days: int) -> list[date]:
    newest = newest_due_day(now, lateness_days, hour_utc)
    return [newest - timedelta(days=n) for n in reversed(range(lookback_days))]


class NightlyScheduler:
    """``tick()`` from the loader's loop: cheap, never blocks; a background thread runs the
    due days one at a time. Two schedulers (replicas) never run one day twice at once:
    ``run_day`` holds the day's advisory lock."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], datetime] = utcnow,
        run: Callable[..., DayResult] = run_day,
        check_every_s: float = 60.0,
        after_day: Callable[[DayResult], None] | None = None,
        adapters: ReprocessAdapters,  # eventpipe.bootstrap.build_reprocess
    ) -> None:
        self.settings, self.registry, self.clock, self.run = settings, registry, clock, run
        self.adapters = adapters
        self.check_every_s, self.after_day = check_every_s, after_day
        self._thread: threading.Thread | None = None
        self._next_check = 0.0

    def due_days(self, now: datetime | None = None) -> list[date]:
        return [day for day, _ in self.due(now)]

    def due(self, now: datetime | None = None) -> list[tuple[date, int | None]]:
        """Due days, oldest first, each with the lateness to run it with (None: the setting)."""
        s, now = self.settings, now or self.clock()
        days = candidate_days(now, s.reprocess_lateness_days, s.reprocess_hour_utc, s.reprocess_lookback_days)
        since = last_nightly(now, s.reprocess_hour_utc)
        wh = self.adapters.warehouse("eventpipe-reprocess-scheduler")
        try:
            rows = wh.run(lambda conn: _fetch(conn, day_status_since(s.warehouse_schema, days[0])))
            touched = wh.run(lambda conn: _fetch(conn, touched_before(s.warehouse_schema, since)))
        finally:
            wh.close()
        final = {day for day, is_final, _ in rows if is_final}
        self._seed_last_success([at for _, is_final, at in rows if is_final and at is not None])
        due: dict[date, int | None] = {day: None for day in days if day not in final}
        for day, received in touched:
            due[day] = touched_lateness(day, received, s.reprocess_lateness_days)
        return sorted(due.items())

    def run_due(self, now: datetime | None = None) -> list[DayResult]:
        done = []
        for day, lateness in self.due(now):
            try:
                done.append(
                    self.run(self.settings, day, lateness, registry=self.registry, adapters=self.adapters)
                )
            except ReprocessBusy:
                log.info("reprocess skipped: day already running", extra={"day": day.isoformat()})
                continue
            except Exception:  # counted and logged by run_day; retried next round
                break
            if self.after_day is not None:  # e.g. verify the day just made final
                self.after_day(done[-1])
        return done

    def tick(self, now: datetime | None = None) -> bool:
        """Start a background round if none is running and the last check is old enough;
        True if one was started. Off when ``reprocess_schedule_enabled`` is false (e.g. an
        external scheduler runs ``eventpipe reprocess``)."""
        if not self.settings.reprocess_schedule_enabled:
            return False
        if self._thread is not None and self._thread.is_alive():
            return False
        if time.monotonic() < self._next_check:
            return False
        self._next_check = time.monotonic() + self.check_every_s
        self._thread = threading.Thread(target=self._round, args=(now,), name="reprocess", daemon=True)
        self._thread.start()
        return True

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _round(self, now: datetime | None) -> None:
        try:
            self.run_due(now)
        except Exception:  # e.g. the warehouse is down: the next tick retries
            log.exception("reprocess round failed")

    def _seed_last_success(self, finalized: list[datetime]) -> None:
        """After a restart, the success gauge starts from the newest final day, not 0."""
        gauge = reprocess_metrics(self.registry).last_success
        current = (self.registry or REGISTRY).get_sample_value(
            "eventpipe_reprocess_last_success_timestamp_seconds"
        )
        if finalized and not current:
            gauge.set(max(finalized).timestamp())


def _fetch(conn: Any, query: Statement) -> list[tuple]:
    with conn, conn.cursor() as cur:
        cur.execute(query)
        return cur.fetchall()
