"""Compact sets of 64-bit key hashes, each tagged with a time bucket (pure, no I/O).

The stream must remember 48 h of messageIds and the day's distinct-user marks. As Python
dicts of strings that is ~100-200 bytes per entry (about 95 GB at 100M events/day); here an
entry is an 8-byte hash plus a 2-byte bucket tag (an hour or a day index, relative to a base),
plus 1-2 bytes of the prefilter below and the pending level: docs/benchmarks.md has the
measured bytes per entry.

Layout (a two-level LSM, both levels in memory):

* ``pending_keys``/``pending_tags``: recent additions, a small sorted level (absolute tags) that
  a seal's sorted hashes are inserted into with one copy of it; it was a dict ``hash -> tag``,
  whose per-key inserts and lookups cost ~0.5-0.9 CPU-µs per event in the worker (py-spy);
* ``keys``/``tags``: sorted numpy arrays holding everything merged so far; the pending level is
  merged into them once it exceeds ``max(MIN_PENDING, len(keys) // PENDING_FRACTION)``
  entries, so each entry is copied about ``PENDING_FRACTION`` times over its life;
* ``bits``: a one-hash bitmap over ``keys`` (at most 1/8 full) that answers most misses --
  the common case for a fresh messageId -- without a binary search.

Membership is exact for the hashes; the hashing itself is the only source of error (a new
key whose hash equals a stored one): docs/stream.md states the bound. Pruning drops every
entry whose tag is below a horizon, so the state is bounded by the time window, not by
the traffic ever seen.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

import numpy as np
from xxhash import xxh3_64_intdigest

from eventpipe.timeutil import format_ts, parse_ts

MIN_PENDING = 1 << 16
PENDING_FRACTION = 64
BITS_PER_ENTRY = 8  # prefilter: a 1/8-full bitmap lets ~7 of 8 misses skip the binary search
TAG_SPAN = 1 << 16  # merged tags are 2-byte offsets from a base

EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def key_hash(text: str) -> int:
    """A stable 64-bit hash of ``text`` (Python's ``hash`` is salted per process; this one
    must be the same in every worker and after every restart, as the changelog holds it).
    XXH3-64: ~0.1 µs where blake2b cost ~1 µs, and the fold hashes twice per event; the
    collision bound of docs/stream.md assumes its outputs are uniform for non-adversarial keys."""
    return xxh3_64_intdigest(text.encode())


# An odd 64-bit constant: the user's hash is multiplied by it, so that a mark's hash is not
# symmetric in its row and its user (a row text equal to a user id cannot swap roles).
_USER_MIX = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1


def user_mix(user_hash: int) -> int:
    return user_hash * _USER_MIX & _MASK64


def mark_hash(row_hash: int, user_hash: int) -> int:
    """The hash of a distinct-user mark (row, user) from the row's and the user's own hashes:
    the fold hashes each user once per event and each row once (cached), not every pair.
    For one row, users' marks collide only if their user hashes collide (the map is a
    bijection of the user hash): the bound of docs/stream.md holds."""
    return row_hash ^ user_mix(user_hash)


def hour_tag(hour: str) -> int:
    """``YYYY-MM-DDTHH`` -> hours since the epoch (the bucket tag of a messageId)."""
    return day_tag(hour[:10]) * 24 + int(hour[11:13])


def day_tag(day: str) -> int:
    """``YYYY-MM-DD`` -> days since the epoch (the bucket tag of a distinct-user mark)."""
    return date.fromisoformat(day).toordinal() - EPOCH_ORDINAL


def assignment_horizon(high_received: str, window_days: int) -> int:
    """The day tag of the oldest first exposure whose assignment is still kept."""
    return day_tag(high_received[:10]) - window_days


def horizon(high_received: str, window_hours: int) -> str:
    """The oldest ``receivedAt`` still inside the dedup window that ends at ``high_received``."""
    return format_ts(parse_ts(high_received) - timedelta(hours=window_hours))


class Marks:
    """A set of 64-bit hashes, each with a tag, prunable by tag. Merged tags are stored in
    2 bytes, relative to a base set by the first addition (``TAG_SPAN`` either side: ±3.7
    years of hours, far beyond any window; a tag outside is clamped to the edge)."""

    def __init__(self) -> None:
        self.pending_keys = np.empty(0, dtype=np.uint64)  # sorted, distinct, none in ``keys``
        self.pending_tags = np.empty(0, dtype=np.int64)
        self.keys = np.empty(0, dtype=np.uint64)
        self.tags = np.empty(0, dtype=np.uint16)
        self._base: int | None = None
        self._shift = 64 - 6
        self._bits = bytearray(8)

    @property
    def pending(self) -> dict[int, int]:
        """The pending level as ``hash -> tag`` (to inspect; the columns are the store)."""
        return dict(zip(self.pending_keys.tolist(), self.pending_tags.tolist(), strict=True))

    def __len__(self) -> int:
        return len(self.keys) + len(self.pending_keys)

    def __contains__(self, h: int) -> bool:
        return bool(self.contains_array(np.array([h], dtype=np.uint64))[0])

    def add(self, h: int, tag: int) -> None:
        """Add ``h`` (kept with the newer tag if it is already here); ``add_many`` is the
        fast way (the seal adds a cut's entries at once)."""
        self.add_many(np.array([h], dtype=np.uint64), np.array([tag], dtype=np.int64))

    def contains_many(self, hashes: list[int]) -> list[bool]:
        """``[h in self for h in hashes]``, with one vectorised search of the merged arrays."""
        found: list[bool] = self.contains_array(np.array(hashes, dtype=np.uint64)).tolist()
        return found

    def contains_array(self, wanted: np.ndarray) -> np.ndarray:
        """Whether each of the uint64 ``wanted`` is here: the bitmap first, then a search of
        the merged arrays for its hits only, then ``pending``."""
        found = np.zeros(len(wanted), dtype=bool)
        if len(self.keys) and len(wanted):
            maybe = self._maybe_merged(wanted)
            if len(maybe):
                at = np.minimum(self.keys.searchsorted(wanted[maybe]), len(self.keys) - 1)
                found[maybe] = self.keys[at] == wanted[maybe]
        if len(self.pending_keys) and len(wanted):
            at = np.minimum(self.pending_keys.searchsorted(wanted), len(self.pending_keys) - 1)
            found |= self.pending_keys[at] == wanted
        return found

    def add_many(self, hashes: Iterable[int] | np.ndarray, tags: Iterable[int] | np.ndarray) -> None:
        """``add`` for each pair, the merged arrays searched once for all of them."""
        keys = np.asarray(hashes if isinstance(hashes, np.ndarray) else list(hashes), dtype=np.uint64)
        stamps = np.asarray(tags if isinstance(tags, np.ndarray) else list(tags), dtype=np.int64)
        if not len(keys):
            return
        if not (keys[1:] > keys[:-1]).all():  # the seal's come sorted and distinct (``Live``)
            order = np.argsort(keys)
            keys, stamps = keys[order], stamps[order]
            first = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1])))
            keys, stamps = keys[first], np.maximum.reduceat(stamps, first)  # the newest tag stays
        pending, pending_tags = self.pending_keys, self.pending_tags
        if len(pending) + len(keys) > self._pending_limit():
            self._add_merging(keys, stamps)  # likely to merge now: no trip through pending
            return
        maybe = self._maybe_merged(keys) if len(self.keys) else keys[:0]
        if len(maybe):  # the seal's keys are new but for ~1/8 bitmap false hits: 1/8 of the search
            at = np.minimum(self.keys.searchsorted(keys[maybe]), len(self.keys) - 1)
            hit = self.keys[at] == keys[maybe]
            if hit.any():
                np.maximum.at(self.tags, at[hit], self._relative_many(stamps[maybe[hit]]))
                merged = np.zeros(len(keys), dtype=bool)
                merged[maybe[hit]] = True
                keys, stamps = keys[~merged], stamps[~merged]
        places = pending.searchsorted(keys)  # one search: what follows changes no pending key
        if len(pending) and len(keys):
            at = np.minimum(places, len(pending) - 1)
            met = pending[at] == keys
            if met.any():  # met again: the newest tag stays
                pending_tags[at[met]] = np.maximum(pending_tags[at[met]], stamps[met])
                keys, stamps, places = keys[~met], stamps[~met], places[~met]
        if len(keys):
            self.pending_keys, self.pending_tags = _insert((pending, pending_tags), places, (keys, stamps))
        if len(self.pending_keys) > self._pending_limit():
            self.merge()

    def _pending_limit(self) -> int:
        return max(MIN_PENDING, len(self.keys) // PENDING_FRACTION)

    def _add_merging(self, keys: np.ndarray, stamps: np.ndarray) -> None:
        """``add_many``'s outcome, exactly (the same arrays, tags and bitmap), for sorted distinct
        ``keys`` that take the pending level over its limit unless many are merged already: the
        merged arrays are searched once for pending and ``keys`` together, which the merge needs
        anyway, where the pending path searched them for ``keys`` (bitmap, then its hits), then
        copied ``keys`` into pending, then searched again for all of pending (the bench's cuts
        merge their ~82k marks at every seal, its messageIds every other one: docs/stream.md)."""
        pending, pending_tags = self.pending_keys, self.pending_tags
        if len(pending):  # the union, the newest tag of a hash in both (as the pending path)
            places = pending.searchsorted(keys)
            at = np.minimum(places, len(pending) - 1)
            met = pending[at] == keys
            pending_tags = pending_tags.copy()
            pending_tags[at[met]] = np.maximum(pending_tags[at[met]], stamps[met])
            fresh = ~met
            keys, stamps = _insert((pending, pending_tags), places[fresh], (keys[fresh], stamps[fresh]))
        at = self.keys.searchsorted(keys)
        present = np.zeros(len(keys), dtype=bool)
        if len(self.keys):  # only added keys can be here: pending's never are
            present = self.keys[np.minimum(at, len(self.keys) - 1)] == keys
            if present.any():
                places = at[present]
                self.tags[places] = np.maximum(self.tags[places], self._relative_many(stamps[present]))
        fresh = ~present
        if not present.any():
            fresh_keys, fresh_stamps, fresh_at = keys, stamps, at
        else:
            fresh_keys, fresh_stamps, fresh_at = keys[fresh], stamps[fresh], at[fresh]
        self.pending_keys, self.pending_tags = np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64)
        if len(fresh_keys) <= self._pending_limit():  # the pending path would not have merged
            self.pending_keys, self.pending_tags = fresh_keys, fresh_stamps
            return
        self._merge_in(fresh_keys, fresh_stamps, fresh_at)

    def merge(self) -> None:
        """Move the pending level into the merged arrays (a hash met twice keeps its newest
        tag): both are sorted, so the merge is one copy of the arrays."""
        count = len(self.pending_keys)
        if not count:
            return
        new_keys, new_tags = self.pending_keys, self._relative_many(self.pending_tags)
        self.pending_keys, self.pending_tags = np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64)
        at = self.keys.searchsorted(new_keys)
        present = np.zeros(count, dtype=bool)
        if len(self.keys):
            present = self.keys[np.minimum(at, len(self.keys) - 1)] == new_keys
            self.tags[at[present]] = np.maximum(self.tags[at[present]], new_tags[present])
        fresh = ~present
        self._merge_in(new_keys[fresh], new_tags[fresh], at[fresh], relative=True)

    def _merge_in(
        self, keys: np.ndarray, tags: np.ndarray, at: np.ndarray, *, relative: bool = False
    ) -> None:
        """Insert sorted ``keys``, none merged yet, at their places ``at`` in the merged arrays
        with their ``tags`` (absolute unless ``relative``), and set their bits."""
        new_tags = tags if relative else self._relative_many(tags)
        self.keys, self.tags = _insert((self.keys, self.tags), at, (keys, new_tags))
        if len(self.keys) * BITS_PER_ENTRY > len(self._bits) * 8:
            self._rebuild_bits()
        else:
            self._set_bits(keys)

    def prune(self, min_tag: int) -> int:
        """Forget every entry tagged below ``min_tag``; how many went."""
        before = len(self)
        kept = self.pending_tags >= min_tag
        self.pending_keys, self.pending_tags = self.pending_keys[kept], self.pending_tags[kept]
        keep = self.tags >= self._relative(min_tag)
        if not keep.all():
            self.keys, self.tags = self.keys[keep], self.tags[keep]
            self._rebuild_bits()
        return before - len(self)

    def _maybe_merged(self, wanted: np.ndarray) -> np.ndarray:
        """The indices of the uint64 ``wanted`` whose bit is set: all of those in the merged
        arrays (each has its bit) and at most ~1/8 of the others (``BITS_PER_ENTRY``)."""
        slots = wanted >> np.uint64(self._shift)
        bits = np.frombuffer(self._bits, dtype=np.uint8)[slots >> np.uint64(3)]
        maybe: np.ndarray = np.flatnonzero((bits >> (slots & np.uint64(7)).astype(np.uint8)) & 1)
        return maybe

    def _relative(self, tag: int) -> int:
        if self._base is None:
            self._base = tag - TAG_SPAN // 2
        return min(max(tag - self._base, 0), TAG_SPAN - 1)

    def _relative_many(self, tags: np.ndarray) -> np.ndarray:
        if self._base is None:
            self._base = int(tags[0]) - TAG_SPAN // 2
        relative: np.ndarray = np.clip(tags - self._base, 0, TAG_SPAN - 1).astype(np.uint16)
        return relative

    def _rebuild_bits(self) -> None:
        """A bitmap of 8-16 bits per entry (so at most 1/8 full until the next rebuild)."""
        log2 = max(6, (len(self.keys) * BITS_PER_ENTRY).bit_length())
        self._shift = 64 - log2
        # one flag per bit, packed: 2.3 vs 6.5 ms for 740k keys with ``_set_bits``' ufunc.at
        flags = np.zeros(1 << log2, dtype=bool)
        flags[self.keys >> np.uint64(self._shift)] = True
        self._bits = bytearray(np.packbits(flags, bitorder="little"))

    def _set_bits(self, keys: np.ndarray) -> None:
        slots = keys >> np.uint64(self._shift)
        ones = np.left_shift(np.uint8(1), (slots & np.uint64(7)).astype(np.uint8))
        np.bitwise_or.at(np.frombuffer(self._bits, dtype=np.uint8), slots >> np.uint64(3), ones)


def _insert(
    columns: tuple[np.ndarray, np.ndarray], at: np.ndarray, values: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """``np.insert(column, at, column_values)`` for both columns, ``at`` non-decreasing (the
    positions of sorted keys): the final places are found once, where ``np.insert`` sorts and
    shifts the positions again for each column (60% of a seal's CPU, cProfile). The old
    entries' places too are found once, as indices: a boolean mask per column cost twice as
    much (5.2 vs 2.4 ms for 65k keys into 550k)."""
    final = at + np.arange(len(at))
    old = np.ones(len(columns[0]) + len(at), dtype=bool)
    old[final] = False
    kept = np.flatnonzero(old)
    out = []
    for column, new in zip(columns, values, strict=True):
        merged = np.empty(len(old), dtype=column.dtype)
        merged[final] = new
        merged[kept] = column
        out.append(merged)
    return out[0], out[1]
