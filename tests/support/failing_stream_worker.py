"""``eventpipe.stream.worker`` whose consumer loop meets an error it does not handle: the
first fetched run it folds raises (a stand-in for any bug in the loop). Run as
``python -m tests.support.failing_stream_worker`` (``tests/integration/test_stream_crash.py``)."""

from __future__ import annotations

from typing import Any

from eventpipe.stream import pipeline
from eventpipe.stream.worker import main


class InjectedBug(RuntimeError):
    pass


async def failing_consume(self: Any, *args: Any) -> None:
    raise InjectedBug("injected: the loop's fold failed")


if __name__ == "__main__":
    pipeline.Pipeline._consume = failing_consume  # type: ignore[method-assign]
    raise SystemExit(main())
