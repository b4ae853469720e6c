"""Where the loader's S3 listings start (``eventpipe.loader.listing``), against an in-memory
bucket that answers ``Prefix`` + ``StartAfter`` as S3 does (keys in byte order)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from eventpipe.keys import agg_key, raw_key
from eventpipe.loader.listing import Marks, slot_of

T0 = datetime(2026, 11, 20, 10, 5, tzinfo=UTC)
DAY = "raw/events/dt=2026-11-20/"


class Bucket:
    def __init__(self) -> None:
        self.objects: dict[str, datetime] = {}

    def put(self, key: str, at: datetime) -> str:
        self.objects[key] = at
        return key

    def list(self, prefix: str, start_after: str) -> list[tuple[str, datetime | None]]:
        return [
            (k, self.objects[k]) for k in sorted(self.objects) if k.startswith(prefix) and k > start_after
        ]


def scan(marks: Marks, bucket: Bucket, prefix: str, now: datetime) -> tuple[set[str], int]:
    """One safety-net scan: the keys found, and how many keys the listings returned."""
    found, returned = set(), 0
    for listed_prefix, after in marks.plan(prefix, now):
        keys = bucket.list(listed_prefix, after)
        marks.listed(listed_prefix, after, keys)
        found |= {k for k, _ in keys}
        returned += len(keys)
    return found, returned


def test_a_slot_is_the_key_without_its_first_offset():
    assert slot_of(raw_key(T0, 10, 42)) == "raw/events/dt=2026-11-20/hr=10/events+10+"
    assert (
        slot_of("p/" + agg_key("engagement_daily", 3, 7, T0))
        == "p/agg/engagement_daily/dt=2026-11-20/engagement_daily+3+"
    )
    assert slot_of("raw/events/dt=2026-11-20/hr=10/notes.txt") is None


def test_once_loaded_a_scan_lists_only_what_is_new_even_between_partitions():
    bucket, marks = Bucket(), Marks(settle_s=0)
    # partition 10 sorts before partition 2: a new object of partition 10 sorts before the
    # newest key of the hour, so one mark per day or hour would miss it
    old = [bucket.put(raw_key(T0, p, o), T0) for p in (2, 10) for o in (0, 100)]
    found, returned = scan(marks, bucket, DAY, T0)
    assert found == set(old) and returned == 4  # the first listing of a day is in full
    marks.advance(pending=set(), now=T0)
    assert scan(marks, bucket, DAY, T0) == (set(), 0)
    new = bucket.put(raw_key(T0, 10, 200), T0)
    found, returned = scan(marks, bucket, DAY, T0)
    assert found == {new} and returned == 1
    later_hour = bucket.put(raw_key(T0 + timedelta(hours=1), 0, 300), T0)  # the tail listing finds it
    assert scan(marks, bucket, DAY, T0)[0] >= {later_hour}


def test_a_mark_stops_at_a_pending_or_unsettled_object():
    bucket, marks = Bucket(), Marks(settle_s=60)
    first = bucket.put(raw_key(T0, 0, 0), T0)
    second = bucket.put(raw_key(T0, 0, 100), T0 + timedelta(seconds=50))
    third = bucket.put(raw_key(T0, 0, 200), T0)
    scan(marks, bucket, DAY, T0)
    marks.advance(pending={third}, now=T0 + timedelta(seconds=70))
    # the first settled and loaded; the second was written 20 s ago (an upload of the same
    # slot may still finish before it), so the third is listed again as well
    assert scan(marks, bucket, DAY, T0 + timedelta(seconds=70))[0] == {second, third}
    marks.advance(pending=set(), now=T0 + timedelta(seconds=200))
    assert first not in scan(marks, bucket, DAY, T0 + timedelta(seconds=200))[0]


def test_quiet_slots_are_left_to_the_full_listing_and_old_days_forgotten():
    bucket, marks = Bucket(), Marks(settle_s=0, open_s=3600)
    bucket.put(raw_key(T0, 0, 0), T0)
    scan(marks, bucket, DAY, T0)
    marks.advance(set(), T0)
    later = T0 + timedelta(hours=2)
    listings = marks.plan(DAY, later)
    assert listings == [(DAY, raw_key(T0, 0, 0))]  # only the tail: the slot went quiet
    marks.forget_before(date(2026, 11, 21))
    assert marks.plan(DAY, later) == [(DAY, "")]  # a day no longer recorded is listed in full


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 11), st.integers(0, 3), st.booleans()), min_size=1, max_size=40))
def test_every_object_of_a_known_slot_or_after_the_newest_is_found(writes):
    """Objects arrive one by one (hour, partition; a scan after it or not). Promised: an
    object of a slot already recorded, or one that sorts after every object before it; the
    rest (a new slot below the newest key) is the deep scan's, which finds everything."""
    bucket, marks, found, promised, offsets = Bucket(), Marks(settle_s=0), set(), set(), {}
    for hour, partition, scan_now in writes:
        offsets[hour, partition] = offsets.get((hour, partition), -1) + 1
        key = raw_key(T0.replace(hour=hour), partition, offsets[hour, partition])
        if slot_of(key) in marks.slots or key > max(bucket.objects, default=""):
            promised.add(key)
        bucket.put(key, T0)
        if scan_now:
            found |= scan(marks, bucket, DAY, T0)[0]
            marks.advance(set(), T0)
    found |= scan(marks, bucket, DAY, T0)[0]
    assert promised <= found
    marks.covered.clear()  # the deep scan
    assert found | scan(marks, bucket, DAY, T0)[0] == set(bucket.objects)
