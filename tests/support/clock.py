"""A clock the test controls (eventpipe.clock.Clock): the calendar is pinned and time
moves only when the test says so, so nothing depends on the day the suite runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def today_at_noon() -> datetime:
    """Today (UTC) at 12:00: a day for test data that any real-clock listing window
    (today - 1 .. today + 1) covers, whenever the suite runs."""
    return datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)


class ManualClock:
    def __init__(self, start: datetime | None = None) -> None:
        self._now, self._mono = start or today_at_noon(), 1000.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._mono += seconds
