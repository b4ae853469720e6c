"""Where each S3 listing of the safety net starts (pure): S3 ``StartAfter`` per *slot*.

A slot is an object key without its first offset: ``raw/events/dt=D/hr=HH/events+P+``
or ``agg/<table>/dt=D/<table>+P+`` (DESIGN.md's layout). Within a slot the 19-digit,
zero-padded offset orders the keys as the stream wrote them, so a new object of a slot
sorts after every object the slot already held: listing the slot with ``StartAfter`` =
its mark (the newest key up to which everything listed is loaded or quarantined, and
older than ``settle_s``, in case two uploads of one slot finish out of order) misses
nothing of it. Slots are not time-ordered between themselves (partition 10 sorts before
partition 2), hence one mark per slot rather than one per day.

What a slot listing cannot see, and what does see it:
- a new slot that sorts after every key of its day prefix (the next hour, a new day):
  the *tail* listing of the day prefix, ``StartAfter`` = the newest key listed there;
- a new slot that sorts before it (a partition first seen mid-day), or an object of a
  slot not written for ``open_s`` (an old hour a catching-up stream writes again): the
  full listing of the deep scan (every 15 min) and, first of all, the batch notices.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

_OFFSET = re.compile(r"\+\d{19}\.jsonl\.gz$")


def slot_of(key: str) -> str | None:
    """The key without its first offset (up to and including the last ``+``), or None."""
    found = _OFFSET.search(key)
    return key[: found.start() + 1] if found else None


@dataclass
class Slot:
    mark: str = ""  # every listed key up to this one is finished: list after it
    newest: str = ""  # the newest key listed
    written: datetime | None = None  # LastModified of the newest key listed
    recent: dict[str, datetime | None] = field(default_factory=dict)  # listed keys after the mark


@dataclass
class Marks:
    settle_s: float = 60.0  # a mark passes only keys older than this
    open_s: float = 7200.0  # a slot not written for this long is listed by full listings only
    slots: dict[str, Slot] = field(default_factory=dict)
    covered: set[str] = field(default_factory=set)  # prefixes listed in full at least once

    def plan(self, prefix: str, now: datetime) -> list[tuple[str, str]]:
        """The listings ``(Prefix, StartAfter)`` that find what is new under ``prefix``."""
        if not any(prefix.startswith(done) for done in self.covered):
            return [(prefix, "")]
        under = {name: slot for name, slot in self.slots.items() if name.startswith(prefix)}
        tail = max((slot.newest for slot in under.values()), default="")
        quiet = now - timedelta(seconds=self.open_s)
        listings = [
            (name, slot.mark)
            for name, slot in sorted(under.items())
            if slot.written is None or slot.written >= quiet or slot.recent
        ]
        return [*listings, (prefix, tail)]

    def listed(self, prefix: str, start_after: str, keys: list[tuple[str, datetime | None]]) -> None:
        """Record one listing's keys (every key it returned, in any order)."""
        if not start_after:
            self.covered.add(prefix)
        for key, written in keys:
            name = slot_of(key)
            if name is None:
                continue
            slot = self.slots.setdefault(name, Slot())
            if key > slot.mark:
                slot.recent[key] = written
            if key > slot.newest:
                slot.newest, slot.written = key, written

    def advance(self, pending: set[str], now: datetime) -> None:
        """After a round: each mark moves over the listed keys that are finished (not
        ``pending``) and settled, up to the first that is not."""
        settled = now - timedelta(seconds=self.settle_s)
        for slot in self.slots.values():
            for key in sorted(slot.recent):
                written = slot.recent[key]
                if key in pending or written is None or written > settled:
                    break
                slot.mark = key
                del slot.recent[key]

    def forget_before(self, day: date) -> None:
        """Drop what was recorded of days before ``day`` (the listings no longer reach them)."""
        floor = day.isoformat()
        self.slots = {name: slot for name, slot in self.slots.items() if _day_part(name) >= floor}
        self.covered = {p for p in self.covered if not _day_part(p) or _day_part(p) >= floor}


def _day_part(key: str) -> str:
    """The ``YYYY-MM-DD`` of a key's ``dt=`` partition; "" for a key above the days."""
    at = key.find("/dt=")
    return key[at + 4 : at + 14] if at >= 0 else ""
