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

Stream assignment is the first exposure *seen*; for in-order input (timestamps sorted,
``receivedAt`` monotone) that is the earliest, so the sum of deltas equals DESIGN.md's
truth. Out-of-order input makes streamed rows provisional; the nightly reprocess is final.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from eventpipe.definitions import (
    ANY_EVENT,
    EXPOSURE_EVENT,
    Exposure,
    engagement_name,
    event_day,
    exposure_of,
    user_key,
)
from eventpipe.stream import cutrecord
from eventpipe.stream.marks import Marks, day_tag, hour_tag, key_hash

# Mark keys: ("e", day, event, user), ("x", day, experiment, variant, event, user), hashed;
# changelog keys: ("c", first offset, chunk) for a cut record, ("a", user, experiment).
Key = tuple[str, ...]
TABLES = ("engagement_daily", "experiment_daily", "experiment_assignments")


@dataclass
class Deltas:
    """What a run of offsets added: ``[event_count, user_count]`` per row and received day."""

    engagement: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)
    experiment: dict[tuple[str, str, str, str, str], list[int]] = field(default_factory=dict)
    assignments: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)

    def rows(self, table: str) -> list[dict[str, Any]]:
        """The JSON lines of docs/contracts.md section 3 for one table, sorted by row key so
        that a replay writes the same bytes whatever order its state was restored in."""
        if table == "engagement_daily":
            return [
                {"day": d, "event": e, "received_day": r, "event_count": n, "user_count": u}
                for (d, e, r), (n, u) in sorted(self.engagement.items())
            ]
        if table == "experiment_daily":
            return [
                {
                    "day": d,
                    "experiment_id": x,
                    "variant": v,
                    "event": e,
                    "received_day": r,
                    "event_count": n,
                    "user_count": u,
                }
                for (d, x, v, e, r), (n, u) in sorted(self.experiment.items())
            ]
        if table == "experiment_assignments":
            return [
                {"experiment_id": x, "user_key": k, "variant": v, "first_exposed_at": t}
                for (x, k), (v, t) in sorted(self.assignments.items())
            ]
        raise ValueError(f"unknown table {table!r}")


@dataclass
class PartitionState:
    """A partition's state in two layers. *Live* entries were created by offsets that may be
    folded again (not committed yet): they keep the creating offset, as the module docstring
    requires. Once a cut is committed its entries are *sealed* into compact hashed sets
    (``marks.py``): no offset is needed any more, since every offset still to be folded is
    beyond them, so a sealed hit simply means "existed before". Keys are 64-bit hashes of
    the messageId and of the (row, user) mark (collision bound: docs/stream.md)."""

    live_ids: dict[int, tuple[int, int]] = field(default_factory=dict)  # hash -> (offset, hour tag)
    live_members: dict[int, tuple[int, int]] = field(default_factory=dict)  # hash -> (offset, day tag)
    ids: Marks = field(default_factory=Marks)  # sealed messageIds, tagged by the hour received
    members: Marks = field(default_factory=Marks)  # sealed (row, user) marks, tagged by the day
    assigned: dict[str, dict[str, tuple[str, str, int]]] = field(default_factory=dict)
    changed: set[tuple[str, str]] = field(default_factory=set)  # (user, experiment) assignments to log
    # changelog cut records: first offset -> (chunks, newest hour tag, newest day tag)
    records: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    expired: list[tuple[int, int]] = field(default_factory=list)  # (first offset, chunks) to tombstone
    n_assigned: int = 0
    high_received: str = ""  # latest receivedAt folded: the data clock for pruning
    _tags: dict[str, int] = field(default_factory=dict, repr=False)  # hour/day string -> tag (cache)

    @property
    def size(self) -> int:
        live = len(self.live_ids) + len(self.live_members)
        return live + len(self.ids) + len(self.members) + self.n_assigned

    def _tag(self, text: str) -> int:
        tag = self._tags.get(text)
        if tag is None:
            if len(self._tags) > 10_000:
                self._tags.clear()
            tag = self._tags[text] = hour_tag(text) if len(text) == 13 else day_tag(text)
        return tag

    def apply(self, offset: int, event: dict[str, Any], out: Deltas) -> bool:
        """Fold the event at ``offset``; False if it is a duplicate of an earlier offset."""
        mid = event["messageId"]
        received = event["receivedAt"]
        if received > self.high_received:
            self.high_received = received
        h = key_hash(mid)
        live = self.live_ids.get(h)
        if live is None:
            if h in self.ids:
                return False  # sealed: created by an offset before any that is folded again
            self.live_ids[h] = (offset, self._tag(received[:13]))
        elif live[0] < offset:
            return False
        elif live[0] > offset:
            self.live_ids[h] = (offset, self._tag(received[:13]))
        user = user_key(event)
        if user is None:
            return True
        exposure = exposure_of(event)
        if exposure is not None:
            self._expose(offset, user, exposure, event["timestamp"], out)
        name = engagement_name(event)
        if name is None:
            return True
        day = event_day(event).isoformat()
        rday = received[:10]
        if name == ANY_EVENT:  # an event literally named "*" lands twice in the "*" row
            self._count(out.engagement, ("e", day, name, user), (day, name, rday), offset, 2)
        else:
            self._count(out.engagement, ("e", day, name, user), (day, name, rday), offset, 1)
            self._count(out.engagement, ("e", day, ANY_EVENT, user), (day, ANY_EVENT, rday), offset, 1)
        mine = self.assigned.get(user)
        if not mine:
            return True
        ts = event["timestamp"]
        for experiment, (variant, first, created) in mine.items():
            if created > offset or ts < first:
                continue
            if name == EXPOSURE_EVENT and (exposure is None or exposure.experiment_id != experiment):
                continue  # exposures count only for their own experiment
            self._count(
                out.experiment,
                ("x", day, experiment, variant, name, user),
                (day, experiment, variant, name, rday),
                offset,
                1,
            )
        return True

    def _expose(self, offset: int, user: str, exposure: Exposure, ts: str, out: Deltas) -> None:
        mine = self.assigned.setdefault(user, {})
        experiment = exposure.experiment_id
        current = mine.get(experiment)
        if current is None or current[2] > offset:
            if current is None:
                self.n_assigned += 1
            current = (exposure.variant, ts, offset)
            mine[experiment] = current
            self.changed.add((user, experiment))
        if current[2] == offset:
            out.assignments[(experiment, user)] = (current[0], current[1])

    def _count(
        self, table: dict[Any, list[int]], member: Key, row: tuple[str, ...], offset: int, weight: int
    ) -> None:
        acc = table.get(row)
        if acc is None:
            acc = table[row] = [0, 0]
        acc[0] += weight
        h = key_hash("\x1f".join(member))
        live = self.live_members.get(h)
        if live is None:
            if h in self.members:
                return  # sealed: the user was counted in this row by an earlier offset
            self.live_members[h] = (offset, self._tag(member[1]))
            acc[1] += 1
        elif live[0] > offset:
            self.live_members[h] = (offset, live[1])
            acc[1] += 1
        elif live[0] == offset:
            acc[1] += 1

    # ------------------------------------------------------------ persistence (pure)
    def cut_records(self, first: int, last: int) -> list[tuple[Key, bytes | None]]:
        """The changelog records of the cut ``first..last``: its live entries as compact
        chunks (``cutrecord.py``), the assignments it changed, and tombstones for cut records
        that fell out of the window. Writing them again (a retry) is harmless."""
        ids = [(h, o, t) for h, (o, t) in self.live_ids.items() if o <= last]
        members = [(h, o, t) for h, (o, t) in self.live_members.items() if o <= last]
        out: list[tuple[Key, Any]] = []
        if ids or members:
            chunks = cutrecord.encode(self.high_received, ids, members)
            out += [(("c", str(first), str(i)), chunk) for i, chunk in enumerate(chunks)]
            newest_hour = max((t for _, _, t in ids), default=-1)
            newest_day = max((t for _, _, t in members), default=-1)
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

    def seal(self, last: int) -> None:
        """The cut ending at ``last`` is committed: its entries will never be folded again."""
        for live, marks in ((self.live_ids, self.ids), (self.live_members, self.members)):
            done = [(h, t) for h, (o, t) in live.items() if o <= last]
            for h, tag in done:
                del live[h]
                marks.add(h, tag)

    def restore(self, key: Key, value: bytes | None, start: int) -> None:
        """Apply one changelog record; ``start`` is the offset folding resumes from: entries
        created before it are sealed, later ones stay live with their offsets. Tombstones
        need no work (the records they delete are pruned by ``prune`` after the restore)."""
        kind = key[0]
        if value is None:
            if kind == "a":
                mine = self.assigned.get(key[1], {})
                self.n_assigned -= mine.pop(key[2], None) is not None
            return
        if kind == "c":
            high, ids, members = cutrecord.decode(value)
            self.high_received = max(self.high_received, high)
            self._restore_entries(ids, self.live_ids, self.ids, start)
            self._restore_entries(members, self.live_members, self.members, start)
            chunks, hour, day = self.records.get(int(key[1]), (0, -1, -1))
            newest_hour = max([hour, *(t for _, _, t in ids)])
            newest_day = max([day, *(t for _, _, t in members)])
            self.records[int(key[1])] = (max(chunks, int(key[2]) + 1), newest_hour, newest_day)
        elif kind == "a":
            variant, ts, created = orjson.loads(value)
            mine = self.assigned.setdefault(key[1], {})
            self.n_assigned += key[2] not in mine
            mine[key[2]] = (str(variant), str(ts), int(created))
        elif kind == "m":  # the per-key format before cut records: [offset, receivedAt]
            created, received = orjson.loads(value)
            self.high_received = max(self.high_received, received)
            entry = (key_hash(key[1]), int(created), hour_tag(received[:13]))
            self._restore_entries([entry], self.live_ids, self.ids, start)
        else:  # "e"/"x" marks of the per-key format: the creating offset
            entry = (key_hash("\x1f".join(key)), int(orjson.loads(value)), day_tag(key[1]))
            self._restore_entries([entry], self.live_members, self.members, start)

    @staticmethod
    def _restore_entries(
        entries: list[tuple[int, int, int]], live: dict[int, tuple[int, int]], marks: Marks, start: int
    ) -> None:
        for h, created, tag in entries:
            if created < start:
                marks.add(h, tag)
            elif h not in live or live[h][0] > created:
                live[h] = (created, tag)

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
