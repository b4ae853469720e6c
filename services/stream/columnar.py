"""The columnar fold: a slice of a decoded run (``columns.Run``) folded at once (pure, no I/O).

It computes exactly what ``PartitionState.fold_many`` computes for the same events -- the
same fresh flags, deltas and state (live entries with their creating offsets and tags,
assignments, changed assignments, exposure index) -- with per-run array operations instead
of per-event Python:

* **first seen wins**: an occurrence of a key (messageId hash, or a (row, user) mark hash)
  can count only at the key's lowest offset in the run; every later occurrence meets the
  entry that one created or found. So a run is reduced to its distinct keys (``first_seen``),
  each looked up once in the live dict and the sealed set, with the row path's rules for a
  live entry created before, at, or after that offset (fold.py's module docstring);
* **exposures** are applied in offset order by the row path's rule (``_expose_many``: its
  ``_expose`` over the run in one loop, kept in step by the equality tests); the run's
  events are then joined with their users' assignments *after* the run. That equals the row
  path, which reads each user's assignments as they stand at each event: within a run an
  assignment only ever changes to a lower creating offset, so the one current at offset
  ``o`` is the final one whenever the final one was created at or before ``o``, and
  ``created > o`` skips both otherwise;
* **rows** are counted by grouping integer codes of (day, name, received day) and of
  (day, experiment, variant, name, received day); the distinct-user marks of every row are
  settled together after the run, as the row path settles them.

``tests/unit/test_stream_columnar.py`` checks the equality on random runs (duplicates in and
across runs, re-folds of unsealed offsets, sealed duplicates, several partitions, invalid
records, which ``columns.decode_run`` sends to the row path).
"""

from __future__ import annotations

from itertools import chain, repeat
from math import prod
from operator import attrgetter
from typing import Any

import numpy as np
from xxhash import xxh3_64_intdigest

from eventpipe.stream.columns import UNCOUNTED, Run, stamp_keys
from eventpipe.stream.deltas import Deltas
from eventpipe.stream.fold import PartitionState
from eventpipe.stream.live import Live
from eventpipe.stream.marks import _USER_MIX, Marks

Array = np.ndarray[Any, Any]
U64 = np.uint64
MIX = U64(_USER_MIX)
# Composite integer row keys must fit in an int64; beyond this a slice takes the row path.
KEY_LIMIT = 1 << 62
# Composite keys in a range this small for the rows grouped are grouped by counting (``group``).
DENSE_FACTOR, DENSE_SLACK = 4, 4096
_EXPERIMENT_ID = attrgetter("experiment_id")
_NONE: dict[str, tuple[str, str, int]] = {}  # a user without assignments (never written)
_NOBODY = object()  # equal to no user


def fold_slice(state: PartitionState, run: Run, offsets: list[int], start: int, out: Deltas) -> list[bool]:
    """Fold records ``start .. start + len(offsets)`` of ``run`` (at ``offsets``, ascending)
    into ``state`` and ``out``; for each, False if it is a duplicate of an earlier offset."""
    stop = start + len(offsets)
    if not offsets:
        return []
    received = run.received[start:stop]
    high = max(received)
    if high > state.high_received:
        state.high_received = high
    off = np.asarray(offsets, dtype=np.int64)
    ids = np.fromiter(map(xxh3_64_intdigest, map(str.encode, run.message_ids[start:stop])), U64, len(off))
    hours = np.asarray(run.hours[start:stop], dtype=np.int64)
    fresh = first_seen(state.live_ids, state.ids, ids, off, hours, retag=True)
    names = run.name_code[start:stop]
    counted = np.flatnonzero(fresh & (names != UNCOUNTED))
    exposed = counted[names[counted] == 1]
    if len(exposed):  # exposures first, in offset order: the row path's rule
        _expose_many(state, run, exposed.tolist(), start, offsets, out)
    if len(counted):
        _count(state, run, counted + start, off[counted], out)
    flags: list[bool] = fresh.tolist()
    return flags


def _expose_many(
    state: PartitionState, run: Run, idx: list[int], start: int, offsets: list[int], out: Deltas
) -> None:
    """``PartitionState._expose`` of the run's exposures ``idx`` (ascending, relative to
    ``start``), the same rule in one loop: one call per run instead of one per exposure, the
    lookups hoisted and each exposure's fields gathered in C beforehand (a subscript per field
    in the loop cost more than the rule; ``tests/unit/test_stream_columnar.py`` checks it
    against the row path)."""
    assigned, changed, exposed_on = state.assigned, state.changed, state.exposed_on
    assignments = out.assignments
    at = np.asarray(idx, dtype=np.int64) + start
    rows = at.tolist()
    fields = zip(
        map(run.exposures.__getitem__, rows), map(run.users.__getitem__, rows),
        map(run.timestamps.__getitem__, rows), map(offsets.__getitem__, idx), run.day_tags[at].tolist(),
        strict=True,
    )  # fmt: skip
    fresh = 0
    # a user's exposures mostly follow each other (69% in the bench), a run spans a day or two
    last: object = _NOBODY
    mine: dict[str, tuple[str, str, int]] = {}
    last_tag, on = None, None
    for exposure, user, stamp, offset, tag in fields:
        if exposure is None:
            continue
        if user != last:
            found = assigned.get(user)  # type: ignore[arg-type]  # a counted event has a user
            if found is None:
                found = assigned[user] = {}  # type: ignore[index]
            mine, last = found, user
        experiment = exposure.experiment_id
        current = mine.get(experiment)
        if current is None or current[2] > offset:
            if current is None:
                fresh += 1
            # one key and one value tuple per new assignment, shared by the state and the deltas
            current = mine[experiment] = (exposure.variant, stamp, offset)
            pair = (user, experiment)
            changed.add(pair)  # type: ignore[arg-type]
            if tag != last_tag:
                on = exposed_on.get(tag)
                if on is None:
                    on = exposed_on[tag] = []
                last_tag = tag
            on.append(pair)  # type: ignore[union-attr, arg-type]
            assignments[pair] = current  # type: ignore[index]
        elif current[2] == offset:
            assignments[(user, experiment)] = current  # type: ignore[index]
    state.n_assigned += fresh


def first_seen(live: Live, sealed: Marks, keys: Array, offsets: Array, tags: Array, *, retag: bool) -> Array:
    """Which occurrences count, updating ``live`` as the row path would (``retag``: a live
    entry moved to a lower offset takes that occurrence's tag, as messageIds do; marks keep
    theirs). Occurrences of one key at its lowest offset in the run all count if any does
    (several marks of one event can share a hash)."""
    # an unstable sort (a stable one of 64-bit keys costs ~10x): a key's lowest offset is found
    # per group, not by position in it
    if not len(keys):
        return np.zeros(0, dtype=bool)
    order = np.argsort(keys)
    ks, os_ = keys[order], offsets[order]
    start = np.ones(len(keys), dtype=bool)
    start[1:] = ks[1:] != ks[:-1]
    distinct = bool(start.all())  # most messageId runs: each key its own first occurrence
    if distinct:
        q, qo, qt = ks, os_, tags[order]
    else:
        group = np.cumsum(start) - 1
        lowest = np.minimum.reduceat(os_, np.flatnonzero(start))
        at_lowest = os_ == lowest[group]
        where = np.flatnonzero(at_lowest)
        one = np.ones(len(where), dtype=bool)  # the first occurrence at its key's lowest offset
        one[1:] = group[where[1:]] != group[where[:-1]]
        first = order[where[one]]  # each distinct key at its lowest offset in the run
        q, qo, qt = keys[first], offsets[first], tags[first]
    present, current = live.offsets_of(q)
    new = ~present & ~sealed.contains_array(q)
    lower = present & (current > qo)  # created by a later offset: this one creates it
    if lower.any():
        live.move(q[lower], qo[lower], qt[lower] if retag else None)
    if new.any():
        live.add(q[new], qo[new], qt[new])
    counts = new | (present & (current >= qo))
    flags = np.zeros(len(keys), dtype=bool)
    flags[order] = counts if distinct else counts[group] & at_lowest
    return flags


def group(columns: list[tuple[Array, int]]) -> tuple[Array, Array]:
    """Rows given as code columns (each with its number of codes): a dense group code per row
    (groups in the order of their composite key) and the index of one row of each group. One
    composite int64 key when it fits, else the columns are combined pairwise into dense codes
    (each step stays far below 2**63)."""
    key = columns[0][0]
    size = prod(n for _, n in columns)
    if size < KEY_LIMIT:
        for column, n in columns[1:]:
            key = key * n + column
        if size <= DENSE_FACTOR * len(key) + DENSE_SLACK:
            return _group_dense(key, size)
    else:
        for column, n in columns[1:]:
            _, key = np.unique(key * n + column, return_inverse=True)
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    return inverse.reshape(-1), first


def _group_dense(key: Array, size: int) -> tuple[Array, Array]:
    """``group`` of keys in ``0 .. size - 1`` by counting instead of sorting (np.unique's
    stable sort cost ~6x at a run's sizes): the same group codes, ranked by key; the row
    given for a group is some row of it (all its rows hold the same codes)."""
    present = np.flatnonzero(np.bincount(key, minlength=size))
    rank = np.zeros(size, dtype=np.int64)
    rank[present] = np.arange(len(present))
    inverse = rank[key]
    first = np.empty(len(present), dtype=np.int64)
    first[inverse] = np.arange(len(key))
    return inverse, first


def _count(state: PartitionState, run: Run, idx: Array, offsets: Array, out: Deltas) -> None:
    """Rows, marks and user counts of the counted (fresh, named) records ``idx`` of the run
    (at ``offsets``), grouped by the run's codes (``columns.Run``)."""
    u_code, first_u = _group_dense(run.user_code[idx], len(run.user_texts))  # the run's codes: a small range
    present = run.user_code[idx[first_u]]
    user_list: list[str] = list(map(run.user_texts.__getitem__, present.tolist()))  # type: ignore[arg-type]
    mixed = np.fromiter(map(xxh3_64_intdigest, map(str.encode, user_list)), U64, len(user_list)) * MIX
    d_code, days = run.day_code[idx], run.day_texts
    r_code, rdays = run.received_day_code[idx], run.received_days
    n_code, names = run.name_code[idx], run.name_texts
    tags = run.day_tags[idx]
    m = len(idx)
    # engagement rows: (day, name, received day), and (day, "*", received day) for every event
    every = np.zeros(m, dtype=np.int64)
    both = [np.concatenate(pair) for pair in ((d_code, d_code), (n_code, every), (r_code, r_code))]
    c_e, first_e = group(list(zip(both, (len(days), len(names), len(rdays)), strict=True)))
    rows_e: list[tuple[str, str, str]] = _texts((days, names, rdays), both, first_e)
    events_e = np.bincount(c_e, minlength=len(rows_e)).tolist()
    c_own, c_star = c_e[:m], c_e[m:]
    row_hash = state._row_hash
    hash_e = np.fromiter((row_hash(("e", d, x)) for d, x, _ in rows_e), U64, len(rows_e))
    # an event named "*" lands twice in the "*" row with one mark (fold.py's weight 2)
    named = n_code != 0
    mark_h = [hash_e[c_own[named]] ^ mixed[u_code[named]], hash_e[c_star] ^ mixed[u_code]]
    mark_o, mark_t, mark_r = [offsets[named], offsets], [tags[named], tags], [c_own[named], c_star]
    joined = _assigned(state, run, idx, offsets, u_code, user_list, n_code)
    rows_x: list[tuple[str, str, str, str, str]] = []
    events_x: list[int] = []
    if joined is not None:
        ev, x_code, v_code, experiments, variants = joined
        columns = [d_code[ev], x_code, v_code, n_code[ev], r_code[ev]]
        sizes = (len(days), len(experiments), len(variants), len(names), len(rdays))
        c_x, first_x = group(list(zip(columns, sizes, strict=True)))
        rows_x = _texts((days, experiments, variants, names, rdays), columns, first_x)  # counted: named
        events_x = np.bincount(c_x, minlength=len(rows_x)).tolist()
        hash_x = np.fromiter((row_hash(("x", *r[:4])) for r in rows_x), U64, len(rows_x))
        mark_h.append(hash_x[c_x] ^ mixed[u_code[ev]])
        mark_o.append(offsets[ev])
        mark_t.append(tags[ev])
        mark_r.append(c_x + len(rows_e))
    marks_h, marks_o, marks_t, marks_r = (np.concatenate(c) for c in (mark_h, mark_o, mark_t, mark_r))
    new = first_seen(state.live_members, state.members, marks_h, marks_o, marks_t, retag=False)
    users_per_row = np.bincount(marks_r[new], minlength=len(rows_e) + len(rows_x)).tolist()
    for k, (key, n) in enumerate(zip(rows_e, events_e, strict=True)):
        acc = out.engagement.setdefault(key, [0, 0])
        acc[0] += n
        acc[1] += users_per_row[k]
    for k, (xkey, n) in enumerate(zip(rows_x, events_x, strict=True)):
        acc = out.experiment.setdefault(xkey, [0, 0])
        acc[0] += n
        acc[1] += users_per_row[len(rows_e) + k]


def _texts(tables: tuple[list[Any], ...], columns: list[Array], rows: Array) -> list[Any]:
    """The texts of the code ``columns`` at ``rows``, a tuple per row: the codes gathered as
    lists and mapped in C (a numpy scalar and a subscript per code cost ~4x)."""
    texts = (map(t.__getitem__, codes[rows].tolist()) for t, codes in zip(tables, columns, strict=True))
    return list(zip(*texts, strict=True))


def _assigned(
    state: PartitionState, run: Run, idx: Array, offsets: Array, u_code: Array, user_list: list[str],
    n_code: Array,
) -> tuple[Array, Array, Array, list[str], list[str]] | None:  # fmt: skip
    """The counted events joined with their users' assignments after the run (module
    docstring), kept where the row path counts the event under the assignment: created at
    or before the event's offset, first exposed at or before its timestamp, and for an
    exposure only its own experiment. The kept pairs: event index, experiment and variant
    codes, with the code tables."""
    # each user's assignments (none: an empty dict, only read), flattened in C
    mines = list(map(state.assigned.get, user_list, repeat(_NONE)))
    a_exps: list[str] = list(chain.from_iterable(mines))
    if not a_exps:
        return None
    # (variant, first exposed at, creating offset)
    a_values: list[tuple[str, str, int]] = list(chain.from_iterable(map(dict.values, mines)))
    # codes in order of first appearance (what a setdefault per pair gave), mapped in C
    x_table = {x: i for i, x in enumerate(dict.fromkeys(a_exps))}
    a_vars, a_first, a_created = zip(*a_values, strict=True)
    v_table = {v: i for i, v in enumerate(dict.fromkeys(a_vars))}
    a_exp = list(map(x_table.__getitem__, a_exps))
    a_var = list(map(v_table.__getitem__, a_vars))
    per_user = np.fromiter(map(len, mines), np.int64, len(mines))
    begin = np.concatenate(([0], np.cumsum(per_user)[:-1]))  # the users' assignments in order
    count = per_user[u_code]
    ev = np.repeat(np.arange(len(idx)), count)
    a = begin[u_code[ev]] + np.arange(len(ev)) - np.repeat(np.cumsum(count) - count, count)
    first_keys = None if run.stamp_keys is None else stamp_keys(list(a_first))
    if first_keys is None or run.stamp_keys is None:  # compared as texts, as the row path does
        stamps = np.asarray([run.timestamps[j] for j in idx.tolist()])
        before = stamps[ev] < np.asarray(a_first)[a]
    else:  # the same order as integers (``columns.stamp_keys``)
        before = run.stamp_keys[idx][ev] < first_keys[a]
    keep = (np.asarray(a_created, dtype=np.int64)[a] <= offsets[ev]) & ~before
    exposed = np.full(len(idx), -1, dtype=np.int64)  # an exposure's own experiment code
    own = np.flatnonzero(n_code == 1)
    found = list(map(run.exposures.__getitem__, idx[own].tolist()))
    if None in found:
        exposed[own] = [-2 if e is None else x_table.get(e.experiment_id, -2) for e in found]
    elif found:  # the common case mapped in C (a Python loop per exposure cost ~4x)
        exposed[own] = list(map(x_table.get, map(_EXPERIMENT_ID, found), repeat(-2)))
    x_code, v_code = np.asarray(a_exp, dtype=np.int64)[a], np.asarray(a_var, dtype=np.int64)[a]
    keep &= ~((n_code[ev] == 1) & (exposed[ev] != x_code))
    return ev[keep], x_code[keep], v_code[keep], list(x_table), list(v_table)
