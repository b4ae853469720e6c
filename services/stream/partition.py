"""What the pipeline knows of one partition it owns, and the two ways a cut can be refused.

Shared by ``pipeline.py`` (reading, ownership) and ``writer.py`` (writing a cut)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition

from eventpipe.stream.batch import PartitionBatch
from eventpipe.stream.source import RecordSource


class Fenced(Exception):
    """Another worker owns the partition (or may): this worker must not write for it."""


class Diverged(Exception):
    """An object of the cut exists with another ``last-offset``: never overwrite it."""


@dataclass
class Owned:
    tp: TopicPartition
    batch: PartitionBatch
    verify: bool = True  # look for objects a previous run wrote before opening a cut
    raw_exists: bool = False
    committed: int = -1
    pruned_hour: str = ""
    next_offset: int = 0  # the offset this worker must read next for this partition
    rewound: bool = False  # sought to next_offset: accept what comes (offsets may have gaps)
    fenced_at: float | None = None  # clock.monotonic() when the partition was found owned elsewhere
    seeks: int = 0  # how often its records were sought: a run fetched before the last seek is stale

    def seek(self, records: RecordSource, offset: int) -> None:
        """Read again from ``offset``: taking the first run that comes (offsets may have gaps
        after a seek: compaction, transaction markers), never one fetched before (``seeks``)."""
        self.next_offset, self.rewound = offset, True
        self.seeks += 1
        records.seek(self.tp, offset)


async def gather_all(*aws: Awaitable[Any]) -> list[Any]:
    """Await all concurrently; every one has finished (no write left in flight) before the
    first failure, if any, is raised."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results
