"""Time as a port: services read the wall clock and the monotonic clock through a
``Clock``, so tests can pin the calendar and step time instead of sleeping."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Protocol

from eventpipe.timeutil import utcnow


class Clock(Protocol):
    def now(self) -> datetime:
        """The wall clock, timezone-aware UTC: which day it is, how old a thing is."""
        ...

    def monotonic(self) -> float:
        """Seconds for intervals (how long since the last scan); never jumps back."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return utcnow()

    def monotonic(self) -> float:
        return time.monotonic()
