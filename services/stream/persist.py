"""A partition's state between folds (pure, no I/O): the changelog records a cut writes,
what is done once they are written and once the cut is committed (sealed), the state rebuilt
from the records on assignment, and pruning by data time.

``PartitionState`` (``fold.py``) inherits these; ``changelog.py`` produces and reads the
records. Per cut: one record (in chunks) holds every entry the cut created, one the
assignments it set (``cutrecord.py``); tombstones delete the records that fell out of their
window. Records of earlier formats are still read: the per-key entries (``m``, ``e``, ``x``)
and one record per assignment (``["a", user, experiment]``, deleted by a tombstone of its
key once that assignment changes or is pruned).

Assignment records are deleted in the order they were written, each once every assignment
it holds is older than the window and every record written before it is deleted: an
assignment replaced by a later record (a re-fold at an earlier offset) can then never
outlive its successor in the topic, so a restore always ends on the latest one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from operator import add, itemgetter
from typing import Any

import numpy as np
import orjson

from eventpipe.stream import cutrecord
from eventpipe.stream.live import Columns, Live
from eventpipe.stream.marks import Marks, day_tag, hour_tag, key_hash, mark_hash

# changelog keys: ("c", first offset, chunk) for a cut record, ("s", first offset, chunk)
# for the assignments a cut set, ("a", user, experiment) for one assignment (earlier format)
Key = tuple[str, ...]
Assigned = dict[str, dict[str, tuple[str, str, int]]]  # user -> experiment -> (variant, ts, offset)
NO_ASSIGNMENTS: dict[str, tuple[str, str, int]] = {}


@dataclass
class AssignmentLog:
    """Where a partition's assignments are in the changelog."""

    # the assignment records, in the order written: first offset -> (chunks, newest day tag)
    records: dict[int, tuple[int, int]] = field(default_factory=dict)
    expired: list[tuple[int, int]] = field(default_factory=list)  # (first offset, chunks) to tombstone
    legacy: set[tuple[str, str]] = field(default_factory=set)  # restored from per-assignment records
    pending: list[tuple[str, str]] = field(default_factory=list)  # the changes the last records carry


class Persisted:
    live_ids: Live
    live_members: Live
    ids: Marks
    members: Marks
    assigned: Assigned
    changed: set[tuple[str, str]]
    records: dict[int, tuple[int, int, int]]
    expired: list[tuple[int, int]]
    exposed_on: dict[int, list[tuple[str, str]]]
    n_assigned: int
    high_received: str
    assignment_log: AssignmentLog

    def cut_records(self, first: int, last: int) -> list[tuple[Key, bytes | None]]:
        """The changelog records of the cut ``first..last``: its live entries as compact
        chunks, the assignments it set as one record (``cutrecord.py``), tombstones for
        per-assignment records of the earlier format that changed, and for records that fell
        out of their window. Writing them again (a retry) is harmless."""
        ids, members = self.live_ids.columns(last), self.live_members.columns(last)
        out: list[tuple[Key, Any]] = []
        if len(ids[0]) or len(members[0]):
            chunks = cutrecord.encode(self.high_received, ids, members)
            out += [(("c", str(first), str(i)), chunk) for i, chunk in enumerate(chunks)]
            newest_hour = int(ids[2].max()) if len(ids[2]) else -1
            newest_day = int(members[2].max()) if len(members[2]) else -1
            self.records[first] = (len(chunks), newest_hour, newest_day)
        out += self._assignment_records(first)
        for old, n_chunks in self.expired:
            out += [(("c", str(old), str(i)), None) for i in range(n_chunks)]
        return out

    def _assignment_records(self, first: int) -> list[tuple[Key, bytes | None]]:
        """The assignments changed since the last records, as the record of the cut starting at
        ``first`` (each set, or gone: a restore must not bring back what an older record holds),
        preceded by tombstones of their keys in the earlier per-assignment format (a restore
        reads in order); then tombstones of expired records."""
        log = self.assignment_log
        pending = log.pending = list(self.changed)  # any order: one change per (user, experiment)
        legacy = log.legacy  # empty unless restored from per-assignment records: no scan then
        out: list[tuple[Key, Any]] = [(("a", *c), None) for c in pending if c in legacy] if legacy else []
        if pending:
            # each change's entry, () if gone, and the change with it, in C loops (map): ~11%
            # less than comprehensions for a cut's ~15k changes; the rest is random dict lookups
            users, experiments = map(itemgetter(0), pending), map(itemgetter(1), pending)
            mine = map(self.assigned.get, users, repeat(NO_ASSIGNMENTS))
            found = map(dict.get, mine, experiments, repeat(()))
            entries: list[tuple[str, str, int] | tuple[()]] = list(found)
            changes: list[cutrecord.Assignment] = list(map(add, pending, entries))
            newest_ts = max(map(itemgetter(1), filter(None, entries)), default="")
            newest = day_tag(newest_ts[:10]) if newest_ts else -1
            chunks = cutrecord.encode_assignments(changes)
            out += [(("s", str(first), str(i)), chunk) for i, chunk in enumerate(chunks)]
            chunks_before, newest_before = log.records.pop(first, (0, -1))
            log.records[first] = (max(len(chunks), chunks_before), max(newest, newest_before))  # now last
        for old, n_chunks in log.expired:
            out += [(("s", str(old), str(i)), None) for i in range(n_chunks)]
        return out

    def written(self, records: list[tuple[Key, bytes | None]]) -> None:
        """``records``, the last ``cut_records``, are in the changelog: their assignment changes
        and tombstones are done."""
        log = self.assignment_log
        # not ``clear()`` when nothing was added meanwhile: the set's table would shrink and the
        # next record list its changes in another order (other bytes)
        self.changed.difference_update(log.pending)
        if log.legacy:  # their per-assignment records were tombstoned (an empty set: ~12k hashes saved)
            log.legacy.difference_update(log.pending)
        tombstoned = {int(key[1]) for key, value in records if key[0] == "c" and value is None}
        self.expired = [e for e in self.expired if e[0] not in tombstoned]
        gone = {int(key[1]) for key, value in records if key[0] == "s" and value is None}
        log.expired = [e for e in log.expired if e[0] not in gone]
        log.pending = []

    def restore(self, key: Key, value: bytes | None, start: int) -> None:
        """Apply one changelog record; ``start`` is the offset folding resumes from: entries
        created before it are sealed, later ones stay live with their offsets. Tombstones of
        cut and assignment records need no work (what they delete is pruned by ``prune`` and
        ``prune_assignments`` after the restore, and their tombstones queued again)."""
        kind = key[0]
        if value is None:
            if kind == "a":
                self._forget_assignment(key[1], key[2])
                self.assignment_log.legacy.discard((key[1], key[2]))
            return
        if kind == "c":
            high, ids, members = cutrecord.decode(value)
            self.high_received = max(self.high_received, high)
            restore_entries(ids, self.live_ids, self.ids, start)
            restore_entries(members, self.live_members, self.members, start)
            chunks, hour, day = self.records.get(int(key[1]), (0, -1, -1))
            newest_hour = max([hour, *(t for _, _, t in ids)])
            newest_day = max([day, *(t for _, _, t in members)])
            self.records[int(key[1])] = (max(chunks, int(key[2]) + 1), newest_hour, newest_day)
        elif kind == "s":
            changes = cutrecord.decode_assignments(value)
            newest = -1
            for change in changes:
                if len(change) == 5:
                    user, experiment, variant, ts, created = change
                    self._restore_assignment(user, experiment, (variant, ts, created))
                    newest = max(newest, day_tag(ts[:10]))
                else:
                    self._forget_assignment(change[0], change[1])
            log = self.assignment_log
            chunks, newest_before = log.records.pop(int(key[1]), (0, -1))  # written again: now last
            log.records[int(key[1])] = (max(chunks, int(key[2]) + 1), max(newest, newest_before))
        elif kind == "a":  # one assignment per record, the format before "s" records
            variant, ts, created = orjson.loads(value)
            self._restore_assignment(key[1], key[2], (str(variant), str(ts), int(created)))
            self.assignment_log.legacy.add((key[1], key[2]))
        elif kind == "m":  # the per-key format before cut records: [offset, receivedAt]
            created, received = orjson.loads(value)
            self.high_received = max(self.high_received, received)
            entry = (key_hash(key[1]), int(created), hour_tag(received[:13]))
            restore_entries([entry], self.live_ids, self.ids, start)
        else:  # "e"/"x" marks of the per-key format: the creating offset
            h = mark_hash(key_hash("\x1f".join(key[:-1])), key_hash(key[-1]))
            restore_entries(
                [(h, int(orjson.loads(value)), day_tag(key[1]))], self.live_members, self.members, start
            )

    def _forget_assignment(self, user: str, experiment: str) -> None:
        mine = self.assigned.get(user)
        if mine is not None and mine.pop(experiment, None) is not None:
            self.n_assigned -= 1
            if not mine:
                del self.assigned[user]

    def _restore_assignment(self, user: str, experiment: str, entry: tuple[str, str, int]) -> None:
        mine = self.assigned.setdefault(user, {})
        self.n_assigned += experiment not in mine
        mine[experiment] = entry
        self.exposed_on.setdefault(day_tag(entry[1][:10]), []).append((user, experiment))

    def seal(self, last: int) -> None:
        """The cut ending at ``last`` is committed: its entries will never be folded again."""
        for live, marks in ((self.live_ids, self.ids), (self.live_members, self.members)):
            hashes, _, tags = live.drop(lambda columns: columns[1] <= last)
            marks.add_many(hashes, tags)

    def prune(self, oldest: str) -> int:
        """Forget messageIds received in hours before that of ``oldest`` (an ISO timestamp,
        see ``horizon``) and distinct-user marks of days before its date; queue tombstones
        for the cut records holding nothing newer. Assignments are kept: conversions need
        them for as long as an experiment runs. Returns how many entries went."""
        min_hour, min_day = hour_tag(oldest[:13]), day_tag(oldest[:10])
        dropped = self.ids.prune(min_hour) + self.members.prune(min_day)
        for live, floor in ((self.live_ids, min_hour), (self.live_members, min_day)):
            dropped += len(live.drop(_tagged_before(floor))[0])
        for first, (chunks, hour, day) in list(self.records.items()):
            if hour < min_hour and day < min_day:
                del self.records[first]
                self.expired.append((first, chunks))
        return dropped

    def prune_assignments(self, min_day: int) -> int:
        """Forget assignments first exposed on a day (tag) before ``min_day``; queue tombstones
        for the assignment records holding nothing newer (in the order written, module
        docstring) and for per-assignment records of the earlier format. The warehouse keeps
        every assignment (earliest wins), so only streamed experiment rows change: a user's
        later events stop counting under that variant (or, re-exposed, under the new
        assignment) until the nightly reprocess. How many went."""
        dropped = 0
        for day in [d for d in self.exposed_on if d < min_day]:
            for user, experiment in self.exposed_on.pop(day):
                mine = self.assigned.get(user, {})
                entry = mine.get(experiment)
                if entry is None or day_tag(entry[1][:10]) != day:
                    continue  # gone already, or replaced by an exposure indexed under its own day
                del mine[experiment]
                if not mine:
                    del self.assigned[user]
                self.n_assigned -= 1
                self.changed.add((user, experiment))  # written as gone (module docstring)
                dropped += 1
        log = self.assignment_log
        for first, (chunks, newest) in list(log.records.items()):
            if newest >= min_day:
                break  # in the order written (module docstring)
            del log.records[first]
            log.expired.append((first, chunks))
        return dropped


def _tagged_before(floor: int) -> Callable[[Columns], np.ndarray]:
    return lambda columns: columns[2] < floor


def restore_entries(entries: list[tuple[int, int, int]], live: Live, marks: Marks, start: int) -> None:
    """Entries ``(hash, creating offset, tag)`` read from the changelog: sealed if created
    before ``start``, else live (the lowest creating offset of a key wins)."""
    sealed = [(h, tag) for h, created, tag in entries if created < start]
    marks.add_many([h for h, _ in sealed], [tag for _, tag in sealed])
    later = [entry for entry in entries if entry[1] >= start]
    if later:
        n = len(later)
        live.lowest(
            np.fromiter((h for h, _, _ in later), np.uint64, n),
            np.fromiter((created for _, created, _ in later), np.int64, n),
            np.fromiter((tag for _, _, tag in later), np.int64, n),
        )
