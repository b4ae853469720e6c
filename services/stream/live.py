"""The live layer of a partition's state as columns (pure, no I/O): ``hash -> (creating
offset, tag)`` for the entries of offsets that may still be folded again (fold.py's module
docstring says why they keep the offset).

Until issue 16 these were dicts, one tuple per entry: every new messageId and mark of the
columnar fold cost a dict insert, and every cut turned the dicts into arrays again for its
changelog record and its seal. Here the entries are sorted numpy columns, so the columnar fold
looks up, adds and moves a whole run's keys with array operations, and the cut record, the
seal and the prune read and cut the columns directly. Layout:

* two sorted levels with disjoint keys: ``base`` and a smaller ``delta`` that a run's new keys
  are inserted into; ``delta`` is merged into ``base`` once it exceeds
  ``max(MIN_DELTA, len(base) // DELTA_FRACTION)``, so an insert copies the small level, not
  the whole cut's entries (a cut of 50,000 events holds ~200,000), and each entry is copied a
  few times over its life;
* ``recent``: a dict of entries written one at a time (the row path, a restore), which
  shadows the levels until the next operation on columns moves it into them (``settle``).

It is a read-only ``Mapping`` (equality with a dict compares entries, as the tests do); the
writes are ``__setitem__`` (one entry) and the column operations below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]
Entry = tuple[int, int]  # (creating offset, tag)
Columns = tuple[Array, Array, Array]  # hashes (uint64), creating offsets, tags (int64)

MIN_DELTA = 1 << 13
DELTA_FRACTION = 8


def _empty() -> Columns:
    return np.empty(0, np.uint64), np.empty(0, np.int64), np.empty(0, np.int64)


def _find(level: Columns, keys: Array) -> tuple[Array, Array]:
    """Where each key is in the sorted ``level`` (index, and whether it is there)."""
    hashes = level[0]
    if not len(hashes):
        return np.zeros(len(keys), np.int64), np.zeros(len(keys), bool)
    at = np.minimum(hashes.searchsorted(keys), len(hashes) - 1)
    return at, hashes[at] == keys


def _insert(level: Columns, keys: Array, offsets: Array, tags: Array) -> Columns:
    """``level`` with the absent, distinct ``keys`` added (still sorted). One stable sort of
    the two concatenated: timsort finds the sorted level and the keys (sorted as the columnar
    fold hands them over) as two runs and merges them in one pass, where a search per key and
    masked copies of the three columns cost 2-3x at a run's sizes."""
    dtypes = [column.dtype for column in level]  # int64 keys beside uint64 ones would make float64
    hashes = np.concatenate((level[0], keys.astype(dtypes[0], copy=False)))
    order = hashes.argsort(kind="stable")
    offsets, tags = offsets.astype(dtypes[1], copy=False), tags.astype(dtypes[2], copy=False)
    return hashes[order], np.concatenate((level[1], offsets))[order], np.concatenate((level[2], tags))[order]


class Live(Mapping[int, Entry]):
    def __init__(self) -> None:
        self.base: Columns = _empty()
        self.delta: Columns = _empty()
        self.recent: dict[int, Entry] = {}

    # -- the Mapping view (tests, sizes; not the fold's hot path) --------------------------

    def __len__(self) -> int:
        self.settle()
        return len(self.base[0]) + len(self.delta[0])

    def __getitem__(self, h: int) -> Entry:
        entry = self.recent.get(h)
        if entry is None:
            entry = self.stored([h])[0]
            if entry is None:
                raise KeyError(h)
        return entry

    def __iter__(self) -> Iterator[int]:
        self.settle()
        return iter([*self.base[0].tolist(), *self.delta[0].tolist()])

    def __setitem__(self, h: int, entry: Entry) -> None:
        self.recent[h] = entry

    def __repr__(self) -> str:
        return f"Live({dict(self.items())!r})"

    # -- column operations ------------------------------------------------------------------

    def stored(self, hashes: Sequence[int]) -> list[Entry | None]:
        """Each hash's entry in the sorted levels (not ``recent``), or None: one vectorised
        search for a run whose ``recent`` writes the caller checks first."""
        if not len(self.base[0]) and not len(self.delta[0]):
            return [None] * len(hashes)
        keys = np.asarray(hashes, dtype=np.uint64)
        found: list[Entry | None] = [None] * len(keys)
        for level in (self.base, self.delta):
            at, hit = _find(level, keys)
            where = np.flatnonzero(hit)
            if len(where):
                entries = zip(level[1][at[where]].tolist(), level[2][at[where]].tolist(), strict=True)
                for i, entry in zip(where.tolist(), entries, strict=True):
                    found[i] = entry
        return found

    def settle(self) -> None:
        """Move ``recent`` into the sorted levels (an entry there replaces the stored one)."""
        if not self.recent:
            return
        n = len(self.recent)
        keys = np.fromiter(self.recent.keys(), np.uint64, n)
        pairs = np.fromiter((x for e in self.recent.values() for x in e), np.int64, 2 * n).reshape(n, 2)
        self.recent = {}
        self._put(keys, pairs[:, 0], pairs[:, 1], retag=True)

    def offsets_of(self, keys: Array) -> tuple[Array, Array]:
        """Whether each of the distinct ``keys`` is live, and its creating offset (-1 if not)."""
        self.settle()
        current = np.full(len(keys), -1, np.int64)
        hit = np.zeros(len(keys), bool)
        for level in (self.base, self.delta):
            at, here = _find(level, keys)
            current[here] = level[1][at[here]]
            hit |= here
        return hit, current

    def _put(self, keys: Array, offsets: Array, tags: Array | None, *, retag: bool) -> None:
        """Set the entries of the distinct ``keys``: those stored get the offset (and the tag if
        ``retag``), the others are inserted with both (``tags`` required then)."""
        missing = np.ones(len(keys), bool)
        for level in (self.base, self.delta):
            at, here = _find(level, keys)
            level[1][at[here]] = offsets[here]
            if retag and tags is not None:
                level[2][at[here]] = tags[here]
            missing &= ~here
        if missing.any() and tags is not None:
            self._insert(keys[missing], offsets[missing], tags[missing])

    def _insert(self, keys: Array, offsets: Array, tags: Array) -> None:
        """Insert absent, distinct ``keys`` into the small level (merged into the large one
        once it outgrows its share)."""
        self.delta = _insert(self.delta, keys, offsets, tags)
        if len(self.delta[0]) > max(MIN_DELTA, len(self.base[0]) // DELTA_FRACTION):
            self.base = _insert(self.base, *self.delta)
            self.delta = _empty()

    def move(self, keys: Array, offsets: Array, tags: Array | None) -> None:
        """Live ``keys`` were created at the lower ``offsets`` (and tags, if given) after all."""
        self.settle()
        self._put(keys, offsets, tags, retag=tags is not None)

    def add(self, keys: Array, offsets: Array, tags: Array) -> None:
        """New entries for the distinct ``keys``, none of them live (so not searched for)."""
        self.settle()
        self._insert(keys, offsets, tags)

    def lowest(self, keys: Array, offsets: Array, tags: Array) -> None:
        """For each entry: set it where its key is not live or live from a later offset (the
        first of several at one key's lowest offset wins), as a restore does."""
        if not len(keys):
            return
        order = np.lexsort((offsets, keys))  # stable: equal (key, offset) keep their order
        keys, offsets, tags = keys[order], offsets[order], tags[order]
        first = np.ones(len(keys), bool)
        first[1:] = keys[1:] != keys[:-1]
        keys, offsets, tags = keys[first], offsets[first], tags[first]
        hit, current = self.offsets_of(keys)
        take = ~hit | (current > offsets)
        self._put(keys[take], offsets[take], tags[take], retag=True)

    def columns(self, last: int | None = None) -> Columns:
        """All entries (those created at or before ``last`` if given) as arrays in hash order:
        the same whichever way they were added and merged (a cut record's bytes depend on the
        entries only)."""
        self.settle()
        if not len(self.delta[0]):
            hashes, offsets, tags = self.base
        elif not len(self.base[0]):
            hashes, offsets, tags = self.delta
        else:
            hashes = np.concatenate((self.base[0], self.delta[0]))
            order = np.argsort(hashes, kind="stable")  # two sorted runs: one merge
            hashes = hashes[order]
            offsets = np.concatenate((self.base[1], self.delta[1]))[order]
            tags = np.concatenate((self.base[2], self.delta[2]))[order]
        if last is not None:
            keep = offsets <= last
            if not keep.all():
                return hashes[keep], offsets[keep], tags[keep]
        return hashes, offsets, tags

    def drop(self, gone_where: Callable[[Columns], Array]) -> Columns:
        """Remove the entries for which ``gone_where`` (a mask over ``columns()``) holds; the
        removed ones."""
        hashes, offsets, tags = self.columns()
        gone = gone_where((hashes, offsets, tags))
        removed = hashes[gone], offsets[gone], tags[gone]
        if gone.any():
            keep = ~gone  # what is left, in hash order: one level
            self.base, self.delta = (hashes[keep], offsets[keep], tags[keep]), _empty()
        return removed

    def clear(self) -> None:
        self.base, self.delta, self.recent = _empty(), _empty(), {}
