"""A partition's state between folds (pure, no I/O): the changelog records a cut writes,
what is done once they are written and once the cut is committed (sealed), the state rebuilt
from the records on assignment, and pruning by data time.

``PartitionState`` (``fold.py``) inherits these; ``changelog.py`` produces and reads the
records. One record per cut holds every entry the cut created (``cutrecord.py``), one record
per changed assignment (``["a", user, experiment]``), tombstones for cut records that fell
out of the window. Records of the earlier per-key format (``m``, ``e``, ``x``) are still read.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

import numpy as np
import orjson

from eventpipe.stream import cutrecord
from eventpipe.stream.marks import Marks, day_tag, hour_tag, key_hash, mark_hash

# changelog keys: ("c", first offset, chunk) for a cut record, ("a", user, experiment)
Key = tuple[str, ...]
Entries = dict[int, tuple[int, int]]  # live entries: hash -> (creating offset, tag)
Assigned = dict[str, dict[str, tuple[str, str, int]]]  # user -> experiment -> (variant, ts, offset)


class Persisted:
    live_ids: Entries
    live_members: Entries
    ids: Marks
    members: Marks
    assigned: Assigned
    changed: set[tuple[str, str]]
    records: dict[int, tuple[int, int, int]]
    expired: list[tuple[int, int]]
    exposed_on: dict[int, list[tuple[str, str]]]
    n_assigned: int
    high_received: str

    def cut_records(self, first: int, last: int) -> list[tuple[Key, bytes | None]]:
        """The changelog records of the cut ``first..last``: its live entries as compact
        chunks (``cutrecord.py``), the assignments it changed, and tombstones for cut records
        that fell out of the window. Writing them again (a retry) is harmless."""
        ids, members = live_columns(self.live_ids, last), live_columns(self.live_members, last)
        out: list[tuple[Key, Any]] = []
        if len(ids[0]) or len(members[0]):
            chunks = cutrecord.encode(self.high_received, ids, members)
            out += [(("c", str(first), str(i)), chunk) for i, chunk in enumerate(chunks)]
            newest_hour = int(ids[2].max()) if len(ids[2]) else -1
            newest_day = int(members[2].max()) if len(members[2]) else -1
            self.records[first] = (len(chunks), newest_hour, newest_day)
        for user, experiment in sorted(self.changed):
            entry = self.assigned.get(user, {}).get(experiment)
            out.append((("a", user, experiment), None if entry is None else orjson.dumps(list(entry))))
        for old, n_chunks in self.expired:
            out += [(("c", str(old), str(i)), None) for i in range(n_chunks)]
        return out

    def written(self, records: list[tuple[Key, bytes | None]]) -> None:
        """``records`` are in the changelog: their assignments and tombstones are done."""
        for key, _ in records:
            if key[0] == "a":
                self.changed.discard((key[1], key[2]))
        tombstoned = {int(key[1]) for key, value in records if key[0] == "c" and value is None}
        self.expired = [e for e in self.expired if e[0] not in tombstoned]

    def restore(self, key: Key, value: bytes | None, start: int) -> None:
        """Apply one changelog record; ``start`` is the offset folding resumes from: entries
        created before it are sealed, later ones stay live with their offsets. Tombstones
        need no work (the records they delete are pruned by ``prune`` after the restore)."""
        kind = key[0]
        if value is None:
            if kind == "a" and key[1] in self.assigned:
                mine = self.assigned[key[1]]
                self.n_assigned -= mine.pop(key[2], None) is not None
                if not mine:
                    del self.assigned[key[1]]
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
        elif kind == "a":
            variant, ts, created = orjson.loads(value)
            mine = self.assigned.setdefault(key[1], {})
            self.n_assigned += key[2] not in mine
            mine[key[2]] = (str(variant), str(ts), int(created))
            self.exposed_on.setdefault(day_tag(str(ts)[:10]), []).append((key[1], key[2]))
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

    def seal(self, last: int) -> None:
        """The cut ending at ``last`` is committed: its entries will never be folded again."""
        for live, marks in ((self.live_ids, self.ids), (self.live_members, self.members)):
            hashes, offsets, tags = live_columns(live, upto=False)
            done = offsets <= last
            if done.all():
                live.clear()
            else:
                hashes, tags = hashes[done], tags[done]
                for h in hashes.tolist():
                    del live[h]
            marks.add_many(hashes, tags)

    def prune(self, oldest: str) -> int:
        """Forget messageIds received in hours before that of ``oldest`` (an ISO timestamp,
        see ``horizon``) and distinct-user marks of days before its date; queue tombstones
        for the cut records holding nothing newer. Assignments are kept: conversions need
        them for as long as an experiment runs. Returns how many entries went."""
        min_hour, min_day = hour_tag(oldest[:13]), day_tag(oldest[:10])
        dropped = self.ids.prune(min_hour) + self.members.prune(min_day)
        for live, floor in ((self.live_ids, min_hour), (self.live_members, min_day)):
            old = [h for h, (_, tag) in live.items() if tag < floor]
            for h in old:
                del live[h]
            dropped += len(old)
        for first, (chunks, hour, day) in list(self.records.items()):
            if hour < min_hour and day < min_day:
                del self.records[first]
                self.expired.append((first, chunks))
        return dropped

    def prune_assignments(self, min_day: int) -> int:
        """Forget assignments first exposed on a day (tag) before ``min_day`` and queue their
        tombstones. The warehouse keeps every assignment (earliest wins), so only streamed
        experiment rows change: a user's later events stop counting under that variant (or,
        re-exposed, under the new assignment) until the nightly reprocess. How many went."""
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
                self.changed.add((user, experiment))
                dropped += 1
        return dropped


def live_columns(live: Entries, last: int = -1, *, upto: bool = True) -> cutrecord.Columns:
    """The live entries created at or before ``last`` as arrays (hashes, offsets, tags)."""
    n = len(live)
    hashes = np.fromiter(live.keys(), dtype=np.uint64, count=n)
    pairs = np.fromiter(chain.from_iterable(live.values()), dtype=np.int64, count=2 * n).reshape(n, 2)
    offsets, tags = pairs[:, 0], pairs[:, 1]
    if upto:
        keep = offsets <= last
        if not keep.all():
            return hashes[keep], offsets[keep], tags[keep]
    return hashes, offsets, tags


def restore_entries(entries: list[tuple[int, int, int]], live: Entries, marks: Marks, start: int) -> None:
    sealed = [(h, tag) for h, created, tag in entries if created < start]
    marks.add_many([h for h, _ in sealed], [tag for _, tag in sealed])
    for h, created, tag in entries:
        if created >= start and (h not in live or live[h][0] > created):
            live[h] = (created, tag)
