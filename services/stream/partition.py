"""What the pipeline knows of one partition it owns, and the two ways a cut can be refused.

Shared by ``pipeline.py`` (reading, ownership) and ``writer.py`` (writing a cut)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition

from eventpipe.stream.batch import PartitionBatch


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


async def gather_all(*aws: Awaitable[Any]) -> list[Any]:
    """Await all concurrently; every one has finished (no write left in flight) before the
    first failure, if any, is raised."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results
