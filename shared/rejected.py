"""Reading the rejected-events archive (S3 ``rejected/``) back: what ``eventpipe rejected``
lists, shows and replays.

Two stages write there (docs/contracts.md): ``rejected/ingest/`` holds the collector's dead
letters (an invalid event of a partly valid batch: reason, detail, source, receivedAt and the
message as sent), ``rejected/stream/`` the records the stream could not use. Each line names
its Kafka (partition, offset), which makes the id of a rejected event,
``<stage>:<partition>:<offset>``; a line found twice (two overlapping objects, see
``eventpipe.stream.deadletters``) is read once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson

from eventpipe.keys import REJECTED_PREFIX
from eventpipe.s3 import iter_gzip_lines, list_keys
from eventpipe.timeutil import parse_ts

_KEY = re.compile(r"rejected/(?P<stage>[a-z]+)/dt=(?P<dt>\d{4}-\d{2}-\d{2})/[^/]+\.jsonl\.gz$")


@dataclass(frozen=True)
class Rejected:
    stage: str  # "ingest" (dead letter) or "stream"
    partition: int
    offset: int
    reason: str
    detail: str
    source: str | None
    received_at: datetime | None
    message: Any  # the event as sent (ingest) or as published (stream); None if unreadable
    key: str  # the S3 object it was read from

    @property
    def id(self) -> str:
        return f"{self.stage}:{self.partition}:{self.offset}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "reason": self.reason,
            "detail": self.detail,
            "source": self.source,
            "receivedAt": self.received_at.isoformat() if self.received_at else None,
            "message": self.message,
            "object": self.key,
        }


def _time(value: Any) -> datetime | None:
    try:
        return parse_ts(value)
    except (TypeError, ValueError, OverflowError):
        return None


def parse_line(stage: str, line: dict[str, Any], key: str) -> Rejected:
    """One archived line of either stage as a ``Rejected``."""
    message = line.get("message")
    source = line.get("source")
    received = _time(line.get("receivedAt"))
    if stage == "stream":  # the record's value: a published event, as text
        try:
            message = orjson.loads(line["value"]) if line.get("value") is not None else None
        except orjson.JSONDecodeError:
            message = None
        if isinstance(message, dict):
            source, received = message.get("source"), _time(message.get("receivedAt"))
    return Rejected(
        stage=stage,
        partition=int(line["partition"]),
        offset=int(line["offset"]),
        reason=str(line.get("reason") or "unknown"),
        detail=str(line.get("detail") or ""),
        source=source if isinstance(source, str) else None,
        received_at=received,
        message=message,
        key=key,
    )


@dataclass(frozen=True)
class Query:
    reason: str | None = None
    since: datetime | None = None
    ids: frozenset[str] = frozenset()

    def day_wanted(self, day: date) -> bool:
        return self.since is None or day >= self.since.date()

    def wanted(self, item: Rejected) -> bool:
        if self.reason is not None and item.reason != self.reason:
            return False
        if self.ids and item.id not in self.ids:
            return False
        return self.since is None or (item.received_at is not None and item.received_at >= self.since)


def read(client: Any, bucket: str, prefix: str, query: Query) -> Iterator[Rejected]:
    """Every archived rejected event ``query`` wants, each id once, in key order."""
    seen: set[str] = set()
    for obj in list_keys(client, bucket, prefix + REJECTED_PREFIX):
        found = _KEY.search(obj["Key"])
        if found is None or not query.day_wanted(date.fromisoformat(found["dt"])):
            continue
        body = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
        for raw in iter_gzip_lines(body):
            item = parse_line(found["stage"], orjson.loads(raw), obj["Key"].removeprefix(prefix))
            if item.id not in seen and query.wanted(item):
                seen.add(item.id)
                yield item
