"""What a run of offsets adds to the aggregate tables (pure): the rows of a cut's delta objects."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import orjson

TABLES = ("engagement_daily", "experiment_daily", "experiment_assignments")
# Each table's first row key: ``jsonl`` finds the row boundaries by it.
FIRST_KEYS = {
    "engagement_daily": b"day",
    "experiment_daily": b"day",
    "experiment_assignments": b"experiment_id",
}

_user, _experiment = itemgetter(0), itemgetter(1)
_variant, _first_exposed = itemgetter(0), itemgetter(1)
# an assignment row's JSON line around its strings: experiment + user, variant, first exposed at
_ASSIGNMENT_PIECES = (None, None, '","variant":"', None, '","first_exposed_at":"', None, '"}\n')


@dataclass
class Deltas:
    """What a run of offsets added: ``[event_count, user_count]`` per row and received day."""

    engagement: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)
    experiment: dict[tuple[str, str, str, str, str], list[int]] = field(default_factory=dict)
    # (user, experiment) -> (variant, first exposed at, creating offset): the state's own key
    # and value objects (``PartitionState.assigned``, ``changed``), not copies: every tuple
    # made per new assignment is traversed by a young GC pass (docs/stream.md "Garbage collector")
    assignments: dict[tuple[str, str], tuple[str, str, int]] = field(default_factory=dict)

    def count(self, table: str) -> int:
        """How many rows ``rows(table)`` has."""
        return len(self._table(table))

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
            keys = self._assignment_keys()
            return [
                {"experiment_id": x, "user_key": k, "variant": v, "first_exposed_at": t}
                for (k, x), (v, t, _) in zip(keys, map(self.assignments.__getitem__, keys), strict=True)
            ]
        raise ValueError(f"unknown table {table!r}")

    def jsonl(self, table: str) -> bytes:
        """The JSONL body of ``rows(table)``: byte for byte one ``orjson.dumps`` per row, each
        line ending in one newline, made from one ``orjson.dumps`` of the whole list (a call
        per row cost ~0.5 µs more than the row's encoding). The rows are flat objects of
        strings and integers that open with the same key, so ``},{"<first key>":`` is found only
        between two rows: orjson escapes every quote inside a string, so this quote -- after a
        brace, before a letter -- opens a key, the brace before it opens an object, and the
        only objects are rows."""
        if table == "experiment_assignments" and self.assignments:
            body = self._assignments_jsonl()
            if body is not None:
                return body
        rows = self.rows(table)
        if not rows:
            return b""
        opening = b'{"' + FIRST_KEYS[table] + b'":'
        body = orjson.dumps(rows)[1:-1].replace(b"}," + opening, b"}\n" + opening) + b"\n"
        if body.count(b"\n") != len(rows):  # a row that is not flat (not made today): one call per row
            return b"".join([orjson.dumps(row) + b"\n" for row in rows])
        return body

    def _assignment_keys(self) -> list[tuple[str, str]]:
        """The assignments' keys in the order of sorted((experiment, user)), by two stable
        sorts of strings: the tuple comparisons of one sort were 2/3 of ``rows``."""
        keys = sorted(self.assignments, key=_user)
        keys.sort(key=_experiment)
        return keys

    def _assignments_jsonl(self) -> bytes | None:
        """``jsonl("experiment_assignments")`` joined from the strings themselves, no dict or
        tuple made per row (a cut has ~0.25 rows per event; making the rows' dicts was 40% of
        ``jsonl``, splitting their JSON 15%); None if a string needs escaping or is not a str.
        orjson writes a str that needs no escape as its UTF-8 between two quotes, and every
        escape it writes holds a backslash: one ``orjson.dumps`` per column tells."""
        keys = self._assignment_keys()
        values = list(map(self.assignments.__getitem__, keys))
        users, variants = list(map(_user, keys)), list(map(_variant, values))
        stamps = list(map(_first_exposed, values))
        experiments: list[str] = []
        pieces = list(_ASSIGNMENT_PIECES) * len(keys)
        pieces[1::7], pieces[3::7], pieces[5::7] = users, variants, stamps
        start = 0
        while start < len(keys):  # sorted by experiment: one slice per experiment's rows
            experiment = keys[start][1]
            end = bisect_right(keys, experiment, start, key=_experiment)
            experiments.append(experiment)
            head = f'{{"experiment_id":"{experiment}","user_key":"'
            pieces[7 * start : 7 * end : 7] = [head] * (end - start)
            start = end
        if any(b"\\" in orjson.dumps(column) for column in (experiments, users, variants, stamps)):
            return None
        if not all(type(text) is str for text in experiments):  # the f-string took any type
            return None
        try:
            return "".join(pieces).encode()  # type: ignore[arg-type]
        except TypeError:  # a value that is not a str (no path makes one today)
            return None

    def _table(self, table: str) -> dict[Any, Any]:
        if table == "engagement_daily":
            return self.engagement
        if table == "experiment_daily":
            return self.experiment
        if table == "experiment_assignments":
            return self.assignments
        raise ValueError(f"unknown table {table!r}")
