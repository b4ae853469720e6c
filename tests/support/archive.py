"""A history as the stream would have left it: raw objects per partition and hour in the real
S3 API server, and the aggregate deltas of the stream's own fold, named like those objects."""

from __future__ import annotations

import zlib
from collections import defaultdict
from typing import Any

from eventpipe.keys import agg_key, raw_key
from eventpipe.s3 import gzip_json_rows
from eventpipe.settings import Settings
from eventpipe.stream.fold import TABLES, Deltas, PartitionState
from eventpipe.timeutil import parse_ts

PARTITIONS = 6


def partition_of(event: dict[str, Any]) -> int:
    return zlib.crc32((event.get("userId") or event["anonymousId"]).encode()) % PARTITIONS


def arrival_order(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(history, key=lambda e: e["receivedAt"])


def stream_cuts(
    history: list[dict[str, Any]], first_offset: int = 0
) -> list[tuple[int, list[tuple[int, dict]]]]:
    """The stream's cuts: per partition in arrival order, cut at each hour boundary of
    ``receivedAt``; each cut is (partition, [(offset, event), ...]) in offset order."""
    cuts, offsets = defaultdict(list), defaultdict(lambda: first_offset)
    for event in arrival_order(history):
        p = partition_of(event)
        cuts[(p, event["receivedAt"][:13])].append((offsets[p], event))
        offsets[p] += 1
    return [(p, batch) for (p, _), batch in sorted(cuts.items())]


def archive(s3: Any, settings: Settings, history: list[dict[str, Any]], first_offset: int = 0) -> list[str]:
    """Raw objects as the stream writes them, named by partition and first offset."""
    keys = []
    for p, batch in stream_cuts(history, first_offset):
        key = settings.s3_prefix + raw_key(parse_ts(batch[0][1]["receivedAt"]), p, batch[0][0])
        s3.put_object(Bucket=settings.s3_bucket, Key=key, Body=gzip_json_rows(e for _, e in batch))
        keys.append(key)
    return keys


def stream_deltas(
    history: list[dict[str, Any]], states: dict[int, PartitionState] | None = None, first_offset: int = 0
) -> dict[str, list[tuple[str, list[dict[str, Any]]]]]:
    """The stream's fold over ``history`` in arrival order: per table, (agg key, delta rows)
    of each cut, named like its raw object (contracts §3: same partition, first offset and
    date). Pass ``states`` to continue a stream that already ran."""
    states = states if states is not None else {}
    out: dict[str, list] = {t: [] for t in TABLES}
    for p, batch in stream_cuts(history, first_offset):
        deltas, state = Deltas(), states.setdefault(p, PartitionState())
        for offset, event in batch:
            state.apply(offset, event, deltas)
        written = parse_ts(batch[0][1]["receivedAt"])
        for table in TABLES:
            out[table].append((agg_key(table, p, batch[0][0], written), deltas.rows(table)))
    return out
