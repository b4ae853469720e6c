"""Records for a stream partition batch, and filling one with them as the stream does:
parsed records added, undecodable ones rejected with their reason."""

from __future__ import annotations

from datetime import datetime

import orjson

from eventpipe.stream.batch import PartitionBatch, parse_event
from eventpipe.timeutil import format_ts


def event(n: int, at: datetime) -> bytes:
    ts = format_ts(at)
    return orjson.dumps(
        {"type": "page", "messageId": f"m{n}", "anonymousId": "a", "timestamp": ts, "receivedAt": ts}
    )


def fill(batch: PartitionBatch, values: list[bytes], first_offset: int = 0) -> list[str | None]:
    reasons = []
    for offset, value in enumerate(values, start=first_offset):
        try:
            parsed = parse_event(value)
        except ValueError as exc:
            reasons.append(batch.add_rejected(offset, value, getattr(exc, "reason", "bad"), str(exc)))
            continue
        reasons.append(batch.before(offset, parsed, len(value)) or batch.add_event(offset, value, parsed))
    return reasons
