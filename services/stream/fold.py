"""The incremental aggregation fold (pure, no I/O): one ``PartitionState`` per Kafka partition.

Partition affinity: the ``events`` topic is keyed by the user key (``userId``, else
``anonymousId``; docs/contracts.md section 1), which is also the identity the counts use. So
every event of a user -- and every copy of one messageId, which carries the same user key --
lands in one partition. A partition's state therefore answers "seen this messageId?", "is
this user already counted in this row?" and "what is this user's assignment?" exactly, and
the deltas of all partitions add up to the global rows.

Idempotent replay: every state entry records the Kafka offset that created it. The state
may run ahead of the committed offset (it is persisted before the offsets are committed,
or kept in memory across a seek back), so re-folding offset ``o`` must not see entries
from later offsets as existing:

* entry created at ``c < o``: it existed when ``o`` was first folded (duplicate, user
  already counted, assignment known);
* ``c == o``: ``o`` created it the first time, so it counts again for ``o``;
* ``c > o``: it did not exist yet when ``o`` was first folded; it is ignored (and
  overwritten if ``o`` creates it).

Hence re-folding offsets ``F..L`` emits exactly the deltas their first fold emitted, and a
replayed cut rewrites byte-identical aggregate objects.

Batches: ``fold_many`` folds a fetched run of events at once and equals folding them one by
one (``apply``): the sealed sets never change while folding (only a commit seals), so their
lookups are done for the whole run in one vectorised search, and a mark's user count is
settled after the run, in the same order (the marks depend on nothing else the run does).

Stream assignment is the first exposure *seen*; for in-order input (timestamps sorted,
``receivedAt`` monotone) that is the earliest, so the sum of deltas equals DESIGN.md's
truth. Out-of-order input makes streamed rows provisional; the nightly reprocess is final.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, NamedTuple

from eventpipe.definitions import (
    ANY_EVENT,
    EXPOSURE_EVENT,
    Exposure,
    engagement_name,
    exposure_of,
    user_key,
)
from eventpipe.stream.deltas import TABLES, Deltas
from eventpipe.stream.live import Live
from eventpipe.stream.marks import Marks, day_tag, hour_tag, key_hash, user_mix
from eventpipe.stream.persist import Assigned, AssignmentLog, Persisted

__all__ = ["TABLES", "Deltas", "Folded", "PartitionState"]

CACHE_LIMIT = 10_000  # tag and row-hash caches are cleared past this (a day has few rows)


class Folded(NamedTuple):
    """What the fold reads of one event, taken (and checked) before anything is folded."""

    message_id: str
    received: str  # receivedAt
    hour: int  # tag of the hour received
    user: str | None
    exposure: Exposure | None
    name: str | None  # engagement row name, None if not an engagement event
    day: str  # UTC date of the corrected timestamp ("" when not counted)
    day_tag: int
    timestamp: str


_folded = tuple.__new__  # a Folded from a tuple: ~4x cheaper than its generated __new__

Mark = tuple[list[int], int, int, int]  # (row counters, mark hash, creating offset, day tag)
# (name's row counters, its mark row hash, "*" row counters or None, its hash, weight)
EngagementRows = tuple[list[int], int, list[int] | None, int, int]


@dataclass
class PartitionState(Persisted):
    """A partition's state in two layers. *Live* entries were created by offsets that may be
    folded again (not committed yet): they keep the creating offset, as the module docstring
    requires. Once a cut is committed its entries are *sealed* into compact hashed sets
    (``marks.py``): no offset is needed any more, since every offset still to be folded is
    beyond them, so a sealed hit simply means "existed before". Keys are 64-bit hashes of
    the messageId and of the (row, user) mark (collision bound: docs/stream.md)."""

    live_ids: Live = field(default_factory=Live)  # hash -> (offset, hour tag)
    live_members: Live = field(default_factory=Live)  # hash -> (offset, day tag)
    ids: Marks = field(default_factory=Marks)  # sealed messageIds, tagged by the hour received
    members: Marks = field(default_factory=Marks)  # sealed (row, user) marks, tagged by the day
    assigned: Assigned = field(default_factory=dict)
    changed: set[tuple[str, str]] = field(default_factory=set)  # (user, experiment) assignments to log
    # day tag of the first exposure -> (user, experiment) assigned then: pruning by age
    exposed_on: dict[int, list[tuple[str, str]]] = field(default_factory=dict)
    # changelog cut records: first offset -> (chunks, newest hour tag, newest day tag)
    records: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    expired: list[tuple[int, int]] = field(default_factory=list)  # (first offset, chunks) to tombstone
    assignment_log: AssignmentLog = field(default_factory=AssignmentLog)  # assignment records
    n_assigned: int = 0
    high_received: str = ""  # latest receivedAt folded: the data clock for pruning
    _tags: dict[str, int] = field(default_factory=dict, repr=False)  # hour/day string -> tag
    _rows: dict[tuple[str, ...], int] = field(default_factory=dict, repr=False)  # mark row -> hash
    _days: dict[str, str] = field(default_factory=dict, repr=False)  # date text -> canonical

    @property
    def size(self) -> int:
        live = len(self.live_ids) + len(self.live_members)
        return live + len(self.ids) + len(self.members) + self.n_assigned

    def _tag(self, text: str) -> int:
        tag = self._tags.get(text)
        if tag is None:
            if len(self._tags) > CACHE_LIMIT:
                self._tags.clear()
            tag = self._tags[text] = hour_tag(text) if len(text) == 13 else day_tag(text)
        return tag

    def _row_hash(self, row: tuple[str, ...]) -> int:
        h = self._rows.get(row)
        if h is None:
            if len(self._rows) > CACHE_LIMIT:
                self._rows.clear()
            h = self._rows[row] = key_hash("\x1f".join(row))
        return h

    def _day(self, text: str) -> str:
        """The canonical ``YYYY-MM-DD`` of a timestamp's date part (``ValueError`` if none)."""
        day = self._days.get(text)
        if day is None:
            if len(self._days) > CACHE_LIMIT:
                self._days.clear()
            day = self._days[text] = date.fromisoformat(text).isoformat()
        return day

    def extract(self, event: dict[str, Any]) -> Folded:
        """What the fold needs of ``event``; ``KeyError``/``TypeError``/``ValueError`` if it
        cannot be folded (then nothing of it is). Once per event: the tags come from their
        caches inline and the tuple is built without ``Folded``'s Python-level ``__new__``."""
        received = event["receivedAt"]
        user = user_key(event)
        name = exposure = None
        day, tag = "", -1
        tags = self._tags
        if user is not None:
            if not isinstance(user, str):
                raise TypeError("the user key is not a string")
            name = engagement_name(event)
            if name is not None:
                if not isinstance(name, str):
                    raise TypeError("the event name is not a string")
                day = self._day(event["timestamp"][:10])
                cached = tags.get(day)
                tag = self._tag(day) if cached is None else cached
                if name == EXPOSURE_EVENT:  # only a track event can carry this name
                    exposure = exposure_of(event)
        hour = tags.get(received[:13])
        if hour is None:
            hour = self._tag(received[:13])
        return _folded(
            Folded, (event["messageId"], received, hour, user, exposure, name, day, tag, event["timestamp"])
        )

    def apply(self, offset: int, event: dict[str, Any], out: Deltas) -> bool:
        """Fold the event at ``offset``; False if it is a duplicate of an earlier offset."""
        return self.fold_many([(offset, self.extract(event))], out)[0]

    def fold_many(self, items: Sequence[tuple[int, Folded]], out: Deltas) -> list[bool]:
        """Fold ``(offset, Folded)`` pairs in offset order, as ``apply`` one by one would;
        for each, False if it is a duplicate of an earlier offset."""
        hashes = [key_hash(f.message_id) for _, f in items]
        sealed = self.ids.contains_many(hashes)
        stored = self.live_ids.stored(hashes)  # the columns do not change while the run folds
        live_ids, marks, fresh = self.live_ids.recent, [], []
        rows: dict[tuple[str, str, str], EngagementRows] = {}
        experiment_rows: dict[tuple[str, ...], tuple[list[int], int]] = {}
        for (offset, f), h, known, kept in zip(items, hashes, sealed, stored, strict=True):
            if f.received > self.high_received:
                self.high_received = f.received
            live = live_ids.get(h) or kept
            if live is None:
                if known:  # sealed: created by an offset before any that is folded again
                    fresh.append(False)
                    continue
                live_ids[h] = (offset, f.hour)
            elif live[0] < offset:
                fresh.append(False)
                continue
            elif live[0] > offset:
                live_ids[h] = (offset, f.hour)
            fresh.append(True)
            user = f.user
            if user is None:
                continue
            if f.exposure is not None:
                self._expose(offset, user, f.exposure, f.timestamp, f.day_tag, out)
            name = f.name
            if name is None:
                continue
            mixed, tag = user_mix(key_hash(user)), f.day_tag
            key = (f.day, name, f.received[:10])
            entry = rows.get(key)
            if entry is None:
                entry = rows[key] = self._engagement_rows(out, key)
            named, named_hash, every, every_hash, weight = entry
            named[0] += weight
            marks.append((named, named_hash ^ mixed, offset, tag))
            if every is not None:
                every[0] += 1
                marks.append((every, every_hash ^ mixed, offset, tag))
            mine = self.assigned.get(user)
            if mine:
                self._count_experiments(offset, f, name, mine, mixed, out, marks, experiment_rows)
        self._settle(marks)
        return fresh

    def _engagement_rows(self, out: Deltas, key: tuple[str, str, str]) -> EngagementRows:
        """The counters an engagement event of ``key`` adds to: its name's row and the "*" row
        (an event literally named "*" lands twice in the "*" row), with their marks' row hashes."""
        day, name, rday = key
        every = out.engagement.setdefault((day, ANY_EVENT, rday), [0, 0])
        every_hash = self._row_hash(("e", day, ANY_EVENT))
        if name == ANY_EVENT:
            return every, every_hash, None, 0, 2
        named = out.engagement.setdefault(key, [0, 0])
        return named, self._row_hash(("e", day, name)), every, every_hash, 1

    def _count_experiments(
        self, offset: int, f: Folded, name: str, mine: dict[str, tuple[str, str, int]], mixed: int,
        out: Deltas, marks: list[Mark], rows: dict[tuple[str, ...], tuple[list[int], int]],
    ) -> None:  # fmt: skip
        """Count the event under each variant its user was assigned at or before it (``rows``:
        this run's experiment rows with their marks' row hashes)."""
        ts, day, rday, tag = f.timestamp, f.day, f.received[:10], f.day_tag
        exposed = f.exposure.experiment_id if f.exposure is not None else None
        for experiment, (variant, first, created) in mine.items():
            if created > offset or ts < first:
                continue
            if name == EXPOSURE_EVENT and exposed != experiment:
                continue  # exposures count only for their own experiment
            row = (day, experiment, variant, name, rday)
            entry = rows.get(row)
            if entry is None:
                acc = out.experiment.setdefault(row, [0, 0])
                entry = rows[row] = (acc, self._row_hash(("x", day, experiment, variant, name)))
            entry[0][0] += 1
            marks.append((entry[0], entry[1] ^ mixed, offset, tag))

    def _expose(self, offset: int, user: str, exposure: Exposure, ts: str, day: int, out: Deltas) -> None:
        mine = self.assigned.setdefault(user, {})
        experiment = exposure.experiment_id
        current = mine.get(experiment)
        if current is None or current[2] > offset:
            if current is None:
                self.n_assigned += 1
            current = (exposure.variant, ts, offset)
            mine[experiment] = current
            pair = (user, experiment)  # one key tuple for the state and the deltas (GC)
            self.changed.add(pair)
            self.exposed_on.setdefault(day, []).append(pair)
            out.assignments[pair] = current
        elif current[2] == offset:
            out.assignments[(user, experiment)] = current

    def _settle(self, marks: list[Mark]) -> None:
        """A mark counts its user once in its row: at the offset that created it (again when
        that offset is re-folded), never for another offset (module docstring)."""
        hashes = [h for _, h, _, _ in marks]
        sealed, stored = self.members.contains_many(hashes), self.live_members.stored(hashes)
        live_members = self.live_members.recent  # written here, moved into the columns later
        for (acc, h, offset, tag), known, kept in zip(marks, sealed, stored, strict=True):
            live = live_members.get(h) or kept
            if live is None:
                if known:
                    continue  # sealed: the user was counted in this row by an earlier offset
                live_members[h] = (offset, tag)
                acc[1] += 1
            elif live[0] > offset:
                live_members[h] = (offset, live[1])
                acc[1] += 1
            elif live[0] == offset:
                acc[1] += 1
