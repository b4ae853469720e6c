"""Stream state benchmark: RSS growth of a partition's dedup/marks state while N distinct
messageIds pass (``stream.rss_growth_mb_10m``), measured in a fresh subprocess.

Two modes, neither through Kafka (10M events through a worker take many minutes here and
measure the same structure): ``fold`` sends events through ``PartitionState.apply`` (the real
fold: messageIds, distinct-user marks, the live layer, sealing after each committed cut of
``CUT`` events); ``direct`` (the 10M figure) adds the same hashes with the same
tags straight to the sealed sets (``PartitionState.ids``/``members``), as sealing does. Both
report bytes per entry, so the two can be compared on the same sizes (``direct`` ~2x faster).
Traffic as 100M events/day would send it: one track event per messageId, 8 events per user
over 4 event names, ``receivedAt`` advancing 864 µs per event (10M = 2.4 h, inside the 48 h
window, so nothing is pruned: the growth is the state itself). No assignments
(no exposures): they are kept for an experiment's life, outside the dedup window.

``python -m bench.stream_state [N] [direct|fold]`` prints one JSON object.
"""

from __future__ import annotations

import resource
import sys
import time
from datetime import UTC, datetime, timedelta

import orjson

from eventpipe.stream.fold import Deltas, PartitionState
from eventpipe.stream.marks import day_tag, hour_tag, key_hash, mark_hash
from eventpipe.timeutil import format_ts

CUT = 10_000
NAMES = ("Product Viewed", "Product Added", "Order Completed", "Signed Up")
START = datetime(2026, 12, 1, tzinfo=UTC)


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def feed_direct(state: PartitionState, count: int) -> None:
    """The hashes and tags, added to the sealed sets a cut (``CUT`` offsets) at a time, as the
    seal adds a committed cut's entries (``Marks.add_many``)."""
    day, hour = format_ts(START)[:10], 0
    ids: tuple[list[int], list[int]] = ([], [])
    members: tuple[list[int], list[int]] = ([], [])
    for offset in range(count):
        hour = (
            hour_tag(format_ts(START + timedelta(seconds=offset // 1157))[:13])
            if offset % 1157 == 0
            else hour
        )
        ids[0].append(key_hash(f"m-{offset:012d}"))
        ids[1].append(hour)
        if offset % 8 < 4:  # a user's first event of each name: a new (name, user) and maybe "*" mark
            user = f"user-{offset // 8:09d}"
            user_hash = key_hash(user)
            row = key_hash("\x1f".join(("e", day, NAMES[offset % 4])))
            members[0].append(mark_hash(row, user_hash))
            members[1].append(day_tag(day))
            if offset % 8 == 0:
                members[0].append(mark_hash(key_hash("\x1f".join(("e", day, "*"))), user_hash))
                members[1].append(day_tag(day))
        if offset % CUT == CUT - 1 or offset == count - 1:
            for marks, (hashes, tags) in ((state.ids, ids), (state.members, members)):
                marks.add_many(hashes, tags)
                hashes.clear()
                tags.clear()


def feed_fold(state: PartitionState, count: int) -> None:
    seal = state.seal
    second, ts = -1, ""
    for offset in range(count):
        if offset // 1157 != second:  # 864 µs per event: a new timestamp string once a second
            second = offset // 1157
            ts = format_ts(START + timedelta(seconds=second))
        event = {
            "type": "track",
            "event": NAMES[offset % 4],
            "messageId": f"m-{offset:012d}",
            "userId": f"user-{offset // 8:09d}",
            "timestamp": ts,
            "receivedAt": ts,
        }
        state.apply(offset, event, Deltas())
        if offset % CUT == CUT - 1:
            seal(offset)  # the cut is committed (its changelog record is not built here)
    seal(count - 1)


def run(count: int, mode: str = "direct") -> dict[str, float]:
    state = PartitionState()
    before, started = rss_mb(), time.monotonic()
    (feed_direct if mode == "direct" else feed_fold)(state, count)
    state.ids.merge()
    state.members.merge()
    elapsed = time.monotonic() - started
    after = rss_mb()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ids, marks = len(state.ids), len(state.members)
    return {
        "messageids": float(ids),
        "marks": float(marks),
        "rss_before_mb": round(before, 1),
        "rss_growth_mb": round(after - before, 1),
        "peak_rss_growth_mb": round(peak - before, 1),
        "bytes_per_entry": round((after - before) * 2**20 / (ids + marks), 1),
        "events_per_s": round(count / elapsed, 1),
    }


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
    print(orjson.dumps(run(count, sys.argv[2] if len(sys.argv) > 2 else "direct")).decode())
