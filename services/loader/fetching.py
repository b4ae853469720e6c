"""A batch still downloading while the load streams earlier ones (``runner`` hands these
to the load, which COPYs each as soon as its download is done)."""

from __future__ import annotations

from concurrent.futures import Future

from eventpipe.loader.batches import Batch


class Fetching:
    """A batch still downloading (a background fetch): ``lines`` waits for it, so the
    COPY streams earlier objects while later ones arrive."""

    def __init__(self, key: str, table: str, future: Future[Batch]) -> None:
        self.key, self.table, self._future = key, table, future

    @property
    def lines(self) -> list[bytes]:
        return self._future.result().lines

    @property
    def rows(self) -> int:
        return len(self.lines)

    def failed(self) -> BaseException | None:
        return self._future.exception() if self._future.done() else None

    def sample_received_at(self, count: int) -> list[str]:
        return self._future.result().sample_received_at(count)
