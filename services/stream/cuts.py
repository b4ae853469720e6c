"""Where a partition's micro-batch is cut (pure; time is a port so tests use a fake clock).

A cut is a run of offsets ``first..last`` of one partition; it becomes one raw object and
one aggregate object per table, all named by the first archived offset. Deterministic
rules, which a replay of the same offsets reproduces by itself:

* count: ``max_events`` archived events;
* bytes: the next event would take the object over ``max_bytes``;
* hour: the next event's ``receivedAt`` hour differs (an object never spans an hour).

One rule depends on the wall clock, so a replay would not reproduce it: the object is
cut when it has been open ``max_age_s`` (the flush interval, at most 10 s). Its outcome is
therefore recorded: every raw object carries its ``last-offset`` in S3 metadata, and when a
(re)started or newly assigned worker opens a cut at an offset whose raw object already
exists, it is told that last offset (``force``) and cuts exactly there, ignoring every
other rule. Replays thus rewrite the same objects (same keys, same lines), never a second,
overlapping one.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate
from typing import Protocol

from eventpipe.clock import SystemClock

__all__ = ["Clock", "CutPolicy", "SystemClock"]


class Clock(Protocol):  # the part of eventpipe.clock.Clock a cut needs
    def monotonic(self) -> float: ...


@dataclass
class CutPolicy:
    max_events: int
    max_bytes: int
    max_age_s: float
    clock: Clock

    first_offset: int = -1  # -1: nothing open
    last_offset: int = -1
    events: int = 0
    nbytes: int = 0
    hour: str = ""  # "YYYY-MM-DDTHH" of the open object's first event
    opened_at: float = 0.0
    forced_last: int | None = None  # last offset recorded by an existing object

    @property
    def is_open(self) -> bool:
        return self.first_offset >= 0

    def force(self, last_offset: int) -> None:
        """An object already exists for this cut: it ends at ``last_offset``."""
        self.forced_last = last_offset

    def before(self, offset: int, hour: str | None, size: int) -> str | None:
        """Must the open cut be closed before the record at ``offset``? The reason, or None.
        ``hour`` is None for a record that is not archived (rejected)."""
        if not self.is_open:
            return None
        if self.forced_last is not None:
            return "replay" if offset > self.forced_last else None
        if hour is None or self.events == 0:
            return None
        if hour != self.hour:
            return "hour"
        if self.nbytes + size > self.max_bytes:
            return "bytes"
        return None

    def add(self, offset: int, hour: str | None, size: int) -> str | None:
        """Record ``offset`` in the cut; the reason to close right after it, or None."""
        if not self.is_open:
            self.first_offset = offset
            self.opened_at = self.clock.monotonic()
        self.last_offset = offset
        if hour is not None:
            if self.events == 0:
                self.hour = hour
            self.events += 1
            self.nbytes += size
        if self.forced_last is not None:
            return "replay" if offset >= self.forced_last else None
        if self.events >= self.max_events:
            return "count"
        return None

    def room(self, hour: str, hours: list[int], sizes: list[int], start: int) -> int:
        """How many records from ``start`` on the cut takes with no cut due *before* any of
        them -- exactly those ``before`` would let in one by one (the last may still close it:
        ``add_many`` says). ``hour`` is record ``start``'s ``YYYY-MM-DDTHH``, ``hours`` a
        column of hour tags (equal tags, equal hours), ``sizes`` the records' sizes; all
        archived. 0 while replaying a recorded cut (record by record, ``force``)."""
        if self.forced_last is not None or (self.events and hour != self.hour):
            return 0
        end = min(len(sizes), start + max(self.max_events - self.events, 1))  # count: after the last
        first = hours[start]
        if hours[start:end].count(first) != end - start:  # an hour ends inside: cut there
            end = next(k for k in range(start, end) if hours[k] != first)
        # bytes: record k fits while the cut's bytes up to it stay within max_bytes; the first
        # record of an empty cut always opens it, whatever its size
        total = list(accumulate(sizes[start:end], initial=self.nbytes))
        fits = bisect_right(total, self.max_bytes) - 1
        return max(fits, 0 if self.events else 1)

    def add_many(self, first: int, last: int, hour: str, count: int, nbytes: int) -> str | None:
        """``add`` of ``count`` archived records ``first..last`` that ``room`` let in: the
        reason to close right after ``last``, or None."""
        if not self.is_open:
            self.first_offset = first
            self.opened_at = self.clock.monotonic()
        self.last_offset = last
        if self.events == 0:
            self.hour = hour
        self.events += count
        self.nbytes += nbytes
        return "count" if self.events >= self.max_events else None

    def expired(self) -> bool:
        """The wall-clock bound: open for ``max_age_s`` (never while replaying a recorded cut)."""
        return (
            self.is_open
            and self.forced_last is None
            and self.clock.monotonic() - self.opened_at >= self.max_age_s
        )

    def ripe(self, fraction: float) -> bool:
        """Open for at least ``fraction`` of ``max_age_s`` (never while replaying a recorded
        cut): worth writing now in the round of a partition whose cut is due (``expired``)."""
        return (
            self.is_open
            and self.forced_last is None
            and self.clock.monotonic() - self.opened_at >= fraction * self.max_age_s
        )

    def expires_in(self) -> float | None:
        """Seconds until ``expired`` (0 when it is), None when no wall-clock bound is pending."""
        if not self.is_open or self.forced_last is not None:
            return None
        return max(self.opened_at + self.max_age_s - self.clock.monotonic(), 0.0)

    def reset(self) -> None:
        self.first_offset = self.last_offset = -1
        self.events = self.nbytes = 0
        self.hour = ""
        self.forced_last = None
