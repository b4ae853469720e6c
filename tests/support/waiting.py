"""Waiting for an outcome of real, asynchronous components (bounded, never a fixed sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_until(
    check: Callable[[], T],
    timeout_s: float,
    what: str,
    *,
    poll_s: float = 0.5,
    progress: Callable[[], Any] | None = None,
) -> T:
    """Polls ``check`` until it returns something truthy and returns that; after ``timeout_s``
    fails the test naming ``what`` and, if given, ``progress()`` (how far it got)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            last = f"; last: {progress()!r}" if progress is not None else ""
            raise AssertionError(f"{what} not reached within {timeout_s}s{last}")
        time.sleep(poll_s)
