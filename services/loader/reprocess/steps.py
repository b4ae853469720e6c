"""The nightly job's five steps as plain functions: what every engine runs (mrjob, Spark).

Each step is a thin shell over ``eventpipe.rollup`` / ``eventpipe.identity`` (the one
definition of a count); an engine only supplies the shuffle between them -- group the
pairs a step yields by key, hand each key and its values to the next step. Keys are
strings or sequences (lists after mrjob's JSON protocol, tuples in Spark, which needs
hashable keys); values are whatever JSON can carry.

1. ``map_line`` (or the ``Packer``, for local inputs: ``pack_event``) packs every input
   line keyed by ``messageId`` (``packed``), then ``reduce_copies`` keeps the canonical copy
   (``rollup.dedup``); its link (if any) is re-keyed by the linked id, the event (if it
   matters for D) and snapshot rows by the raw user key (``copy_outputs``). A message's only
   copy was parsed once, when it was packed: its output was computed then.
2. ``reduce_first_hop`` (key: id) -> its winning link (``identity.earlier``) moves the id's
   items one hop, and tells the id's own key where it points (for the second hop).
3. ``reduce_second_hop`` (key: id) -> items are now keyed by person (``identity`` doc).
4. ``reduce_user`` (key: person) -> ``rollup.rollup_user(events, prior=snapshot, days={D})``.
5. ``combine_rows`` / ``reduce_rows`` (key: output row) -> ``event_count`` = sum,
   ``user_count`` = number of persons; the output is ``(table, row)`` pairs. (mrjob sums
   in step 4's reducer tasks instead and ``merge_partials`` adds the tasks' rows.)

``where()`` names the input for the error a corrupt line raises (engines know their file;
asked only then: reading it per line would cost).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import date
from typing import Any

import orjson

from eventpipe.events import user_key
from eventpipe.identity import Link, earlier, link_of
from eventpipe.loader.reprocess.lines import parse_line, record_problem
from eventpipe.loader.reprocess.packed import (
    LINK_ROW,
    SNAPSHOT_ROW,
    Copy,
    Row,
    is_packed,
    pack_copy,
    pack_row,
)
from eventpipe.loader.reprocess.rows import (
    ASSIGNMENTS,
    TABLES,
    matters_for,
    slim,
    sort_rows,
    to_row,
    user_contributions,
)
from eventpipe.rollup import Assignment, dedup, rollup_user

SNAPSHOT, LINK, TARGET = "snapshot", "link", "target"
_SNAPSHOT_KEYS = frozenset(("experiment_id", "user_key", "variant", "first_exposed_at"))
_LINK_KEYS = frozenset(("anonymous_id", "user_id", "linked_at", "message_id"))
Pairs = Iterator[tuple[Any, Any]]


def is_snapshot_row(record: Any) -> bool:
    """A row of the assignments snapshot (``export_snapshot``), never a raw event."""
    return isinstance(record, dict) and "messageId" not in record and record.keys() >= _SNAPSHOT_KEYS


def is_link_row(record: Any) -> bool:
    """A row of the identities snapshot (``export_identities``), never a raw event."""
    return isinstance(record, dict) and "messageId" not in record and record.keys() >= _LINK_KEYS


def _hop(links: list[list[str]]) -> str | None:
    """The user id of the winning link among ``[user_id, linked_at, message_id]`` values."""
    best: Link | None = None
    for user, at, mid in links:
        candidate = Link("", user, at, mid)
        best = candidate if best is None else earlier(best, candidate)
    return None if best is None else best.user_id


def copy_outputs(event: dict[str, Any], day: date) -> Pairs:
    """The first step's output for the canonical copy of a message: its link (if any),
    re-keyed by the linked id, and the event (if it can change ``day``) by its raw user key."""
    link = link_of(event)
    if link is not None:
        yield link.linked_id, [LINK, [link.user_id, link.linked_at, link.message_id]]
    if matters_for(event, day):
        yield user_key(event), ["event", slim(event)]


def pack_event(line: bytes, event: dict[str, Any], day: date, stored: bytes | None = None) -> bytes:
    """A checked raw event line, packed for the first step (``packed``: with its output if
    it is its message's only copy); ``stored``: where the line was stored instead of the
    line (``packed.store_ref``)."""
    if stored is None:
        return pack_copy(event["messageId"], copy_outputs(event, day), line)
    return pack_copy(event["messageId"], copy_outputs(event, day), stored, stored=True)


def map_line(
    line: bytes | str, day: date, where: Callable[[], str] = lambda: "an input file", checked: bool = False
) -> Iterator[bytes]:
    """One input line as a packed line (``packed``), or nothing for a blank line. With
    ``checked``, lines the ``Packer`` already packed pass as they are."""
    raw = line.encode() if isinstance(line, str) else line
    if checked and is_packed(raw):
        yield raw
        return
    if not raw.strip():  # the loader skips blank lines too (parse_batch)
        return
    raw = raw.replace(b"\r", b" ") if b"\r" in raw else raw
    record, problem = parse_line(raw)
    if problem is None and is_snapshot_row(record):
        yield pack_row([SNAPSHOT, record["user_key"]], SNAPSHOT_ROW, raw)
        return
    if problem is None and is_link_row(record):  # with the raw copies of its link event
        yield pack_row(record["message_id"], LINK_ROW, raw)
        return
    # local inputs were checked object by object (lines.event_lines); s3:// inputs
    # (EMR/Hadoop) were not: a raw line the loader would refuse fails the job, naming
    # its object -- never silently dropped (docs/reprocess.md, "Corrupt raw objects")
    if problem is None and not checked:
        problem = record_problem(record)
    if problem is not None:
        raise ValueError(f"corrupt raw line in {where()} ({problem[0]}: {problem[1]}): quarantine it")
    yield pack_event(raw, record, day)


def reduce_copies(key: Any, values: Iterable[Copy | Row], day: date) -> Pairs:
    """Values are ``packed.read_packed``'s. A lone copy's output was encoded when it was
    packed: it passes as bytes (engines that group objects decode it: ``packed.decoded``)."""
    if isinstance(key, list | tuple):  # snapshot rows of one user
        for snapshot in values:
            assert isinstance(snapshot, Row)  # a user's key groups snapshot rows only
            yield key[1], [SNAPSHOT, snapshot.record]
        return
    copies: list[Copy] = []
    loaded: dict[str, Any] | None = None
    for value in values:
        if isinstance(value, Row):
            loaded = value.record
        else:
            copies.append(value)
    if not copies:  # a link loaded from a day outside the window
        link = loaded
        assert link is not None  # a messageId key always has a raw copy or a loaded link
        yield link["anonymous_id"], [LINK, [link["user_id"], link["linked_at"], link["message_id"]]]
        return
    if len(copies) == 1:
        yield from copies[0].outputs
        return
    (event,) = dedup(orjson.loads(copy.line()) for copy in copies)
    yield from copy_outputs(event, day)


def reduce_first_hop(some_id: str, values: Iterable[Any]) -> Pairs:
    items, links = [], []
    for tag, value in values:
        if tag == LINK:
            links.append(value)
        else:
            items.append([tag, value])
    target = _hop(links)
    if target is not None:
        yield some_id, [TARGET, target]
    for item in items:
        yield target or some_id, item


def reduce_second_hop(some_id: str, values: Iterable[Any]) -> Pairs:
    items, target = [], some_id
    for tag, value in values:
        if tag == TARGET:
            target = value
        else:
            items.append([tag, value])
    for item in items:
        yield target, item


def reduce_user(person: str, values: Iterable[Any], day: date) -> Pairs:
    events: list[dict[str, Any]] = []
    prior: dict[str, Assignment] = {}  # earliest over all the person's ids
    own: dict[str, Assignment] = {}  # rows already under the person's own key
    for tag, value in values:
        if tag == SNAPSHOT:
            found = Assignment(value["variant"], value["first_exposed_at"])
            x = value["experiment_id"]
            if x not in prior or (found.first_exposed_at, found.variant) < (
                prior[x].first_exposed_at,
                prior[x].variant,
            ):
                prior[x] = found
            if value["user_key"] == person:
                own[x] = found
        else:
            events.append(value)
    rollup = rollup_user(events, prior=prior, days={day})
    yield from user_contributions(person, rollup, own, day)


def combine_rows(key: Any, values: Iterable[Any]) -> Pairs:
    if key[0] == ASSIGNMENTS:  # one value per (experiment, user): nothing to sum
        yield from ((key, value) for value in values)
        return
    total = [0, 0]
    for value in values:
        total = sum_counts(total, value)
    yield key, total


def reduce_rows(key: Any, values: Iterable[Any]) -> Pairs:
    for summed_key, value in combine_rows(key, values):
        yield summed_key[0], to_row(list(summed_key), list(value))


def sum_counts(a: Any, b: Any) -> list[int]:
    """Two partial ``[event_count, user_count]`` of one daily row, summed (the combiner's fold)."""
    return [a[0] + b[0], a[1] + b[1]]


def merge_partials(pairs: Iterable[tuple[Any, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The final rows per table from partial rows (``[table, *dims]`` keys): daily counts of
    one key are summed (each partial counts distinct persons), assignments pass through."""
    daily: dict[tuple[str, ...], list[int]] = {}
    out: dict[str, list[dict[str, Any]]] = {table: [] for table in TABLES}
    for key, value in pairs:
        if key[0] == ASSIGNMENTS:
            out[ASSIGNMENTS].append(to_row(list(key), list(value)))
            continue
        row = tuple(key)
        daily[row] = sum_counts(daily[row], value) if row in daily else value
    for row, value in daily.items():
        out[row[0]].append(to_row(list(row), list(value)))
    return {table: sort_rows(table, rows) for table, rows in out.items()}
