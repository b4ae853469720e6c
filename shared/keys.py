"""S3 key naming (pure). DESIGN.md fixes the raw layout; the loader and nightly job rely on it.

``raw/events/dt=YYYY-MM-DD/hr=HH/events+<partition>+<first offset, 19 digits>.jsonl.gz``:
names come from Kafka offsets so a rewrite after a crash produces the same object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

OFFSET_DIGITS = 19
RAW_PREFIX = "raw/events/"
AGG_PREFIX = "agg/"
CORRECTIONS_PREFIX = "corrections/"
REJECTED_PREFIX = "rejected/"

_RAW_RE = re.compile(
    r"raw/events/dt=(?P<dt>\d{4}-\d{2}-\d{2})/hr=(?P<hr>\d{2})/"
    r"events\+(?P<partition>\d+)\+(?P<offset>\d{19})\.jsonl\.gz$"
)


@dataclass(frozen=True)
class RawKey:
    received: datetime  # any moment inside the hour partition
    partition: int
    first_offset: int

    def __str__(self) -> str:
        return raw_key(self.received, self.partition, self.first_offset)


def raw_key(received: datetime, partition: int, first_offset: int) -> str:
    if partition < 0 or first_offset < 0:
        raise ValueError("partition and offset must be non-negative")
    return (
        f"{RAW_PREFIX}dt={received:%Y-%m-%d}/hr={received:%H}/"
        f"events+{partition}+{first_offset:0{OFFSET_DIGITS}d}.jsonl.gz"
    )


def raw_day_prefix(day: date) -> str:
    return f"{RAW_PREFIX}dt={day:%Y-%m-%d}/"


def parse_raw_key(key: str) -> tuple[date, int, int, int] | None:
    """``(dt, hr, partition, first_offset)`` of a raw key (prefix ignored), or None."""
    found = _RAW_RE.search(key)
    if not found:
        return None
    return (
        date.fromisoformat(found["dt"]),
        int(found["hr"]),
        int(found["partition"]),
        int(found["offset"]),
    )


def agg_key(table: str, partition: int, first_offset: int, written: datetime) -> str:
    """Aggregate delta batch: one per (partition, first offset), dated by when it was cut."""
    return (
        f"{AGG_PREFIX}{table}/dt={written:%Y-%m-%d}/"
        f"{table}+{partition}+{first_offset:0{OFFSET_DIGITS}d}.jsonl.gz"
    )


def cut_agg_key(raw: str, table: str) -> str | None:
    """The aggregate object of ``table`` cut together with the raw object ``raw`` (same
    prefix, partition, first offset and date: contracts §3), or None for a non-raw key.
    The nightly job records these as the batches its final rows already contain."""
    found = _RAW_RE.search(raw)
    if not found:
        return None
    written = datetime.fromisoformat(found["dt"])
    return raw[: found.start()] + agg_key(table, int(found["partition"]), int(found["offset"]), written)


def corrections_key(day: date, table: str) -> str:
    return f"{CORRECTIONS_PREFIX}dt={day:%Y-%m-%d}/{table}.jsonl.gz"


def rejected_key(stage: str, partition: int, first_offset: int, written: datetime) -> str:
    return (
        f"{REJECTED_PREFIX}{stage}/dt={written:%Y-%m-%d}/"
        f"{stage}+{partition}+{first_offset:0{OFFSET_DIGITS}d}.jsonl.gz"
    )
