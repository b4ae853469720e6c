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

from eventpipe.definitions import (
    ANY_EVENT,
    EXPOSURE_EVENT,
    Exposure,
    engagement_name,
    event_day,
    exposure_of,
    user_key,
)

# State entry keys (also the changelog keys): ("m", messageId), ("e", day, event, user),
# ("x", day, experiment, variant, event, user), ("a", user, experiment).
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
    seen: dict[str, tuple[int, str]] = field(default_factory=dict)  # messageId -> (offset, receivedAt)
    members: dict[Key, int] = field(default_factory=dict)  # (row..., user) -> offset
    assigned: dict[str, dict[str, tuple[str, str, int]]] = field(default_factory=dict)
    changed: set[Key] = field(default_factory=set)  # entries not yet in the changelog
    n_assigned: int = 0
    high_received: str = ""  # latest receivedAt folded: the data clock for pruning

    @property
    def size(self) -> int:
        return len(self.seen) + len(self.members) + self.n_assigned

    def apply(self, offset: int, event: dict[str, Any], out: Deltas) -> bool:
        """Fold the event at ``offset``; False if it is a duplicate of an earlier offset."""
        mid = event["messageId"]
        received = event["receivedAt"]
        if received > self.high_received:
            self.high_received = received
        seen = self.seen.get(mid)
        if seen is not None and seen[0] < offset:
            return False
        if seen is None or seen[0] != offset:
            self.seen[mid] = (offset, received)
            self.changed.add(("m", mid))
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
            self.changed.add(("a", user, experiment))
        if current[2] == offset:
            out.assignments[(experiment, user)] = (current[0], current[1])

    def _count(
        self, table: dict[Any, list[int]], member: Key, row: tuple[str, ...], offset: int, weight: int
    ) -> None:
        acc = table.get(row)
        if acc is None:
            acc = table[row] = [0, 0]
        acc[0] += weight
        created = self.members.get(member)
        if created is None or created > offset:
            self.members[member] = offset
            self.changed.add(member)
            acc[1] += 1
        elif created == offset:
            acc[1] += 1

    # ------------------------------------------------------------ persistence (pure)
    def value_of(self, key: Key) -> Any:
        """The changelog value of an entry, None once it is gone (a tombstone)."""
        kind = key[0]
        if kind == "m":
            seen = self.seen.get(key[1])
            return None if seen is None else list(seen)
        if kind == "a":
            entry = self.assigned.get(key[1], {}).get(key[2])
            return None if entry is None else list(entry)
        return self.members.get(key)

    def drain(self) -> list[tuple[Key, Any]]:
        """Changed entries with their values (None: deleted), for the changelog; clears the
        change set. Inlined ``value_of``: this runs for about three entries per event."""
        seen, members, assigned = self.seen, self.members, self.assigned
        out: list[tuple[Key, Any]] = []
        for key in self.changed:
            kind = key[0]
            if kind == "m":
                out.append((key, seen.get(key[1])))
            elif kind == "a":
                mine = assigned.get(key[1])
                out.append((key, mine.get(key[2]) if mine else None))
            else:
                out.append((key, members.get(key)))
        self.changed.clear()
        return out

    def restore(self, key: Key, value: Any) -> None:
        """Apply one changelog record (value None deletes)."""
        kind = key[0]
        if kind == "m":
            if value is None:
                self.seen.pop(key[1], None)
            else:
                self.seen[key[1]] = (int(value[0]), str(value[1]))
                self.high_received = max(self.high_received, str(value[1]))
        elif kind == "a":
            user, experiment = key[1], key[2]
            mine = self.assigned.setdefault(user, {})
            had = experiment in mine
            if value is None:
                mine.pop(experiment, None)
                self.n_assigned -= had
            else:
                mine[experiment] = (str(value[0]), str(value[1]), int(value[2]))
                self.n_assigned += not had
        elif value is None:
            self.members.pop(key, None)
        else:
            self.members[key] = int(value)

    def prune(self, horizon: str) -> int:
        """Forget messageIds received before ``horizon`` (ISO timestamp) and distinct-user
        entries of days before its date. Assignments are kept: conversions need them for as
        long as an experiment runs. Returns how many entries went (as tombstones)."""
        old_ids = [mid for mid, (_, received) in self.seen.items() if received < horizon]
        for mid in old_ids:
            del self.seen[mid]
            self.changed.add(("m", mid))
        day = horizon[:10]
        old_members = [key for key in self.members if key[1] < day]
        for key in old_members:
            del self.members[key]
            self.changed.add(key)
        return len(old_ids) + len(old_members)
