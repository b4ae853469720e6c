"""S3 adapter of the stream: bounded, logged retries; library errors become ``StorageError``.

The calls go through obstore (Rust ``object_store``): async on the worker's event loop, the
request built, signed and sent on obstore's own threads with the GIL released, so the loop
keeps heartbeating while S3 is slow or down and no Python thread competes with the fold
for the GIL (docs/stream.md "What the client spends on a PUT": boto3's per-call CPU in a
thread was ~4x obstore's). Every PUT carries a CRC64NVME checksum header that S3 verifies
against the body (``eventpipe.s3.object_store``).

``put(..., exclusive=True)`` sends ``If-None-Match: *`` when ``s3_conditional_put`` is on
(AWS S3 and other stores with conditional writes): the store then refuses to replace an
existing key (412, or 409 for a concurrent conditional write), reported as ``ObjectExists``
without retrying. The local S3 server (s3rver) ignores the header, so it is off by default.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import obstore
from obstore.exceptions import AlreadyExistsError, BaseError, PreconditionError
from tenacity import AsyncRetrying, RetryError, retry_if_exception_type, stop_after_attempt, wait_exponential

from eventpipe.errors import StorageError
from eventpipe.keys import parse_raw_key
from eventpipe.s3 import iter_gzip_lines, object_store
from eventpipe.settings import Settings
from eventpipe.stream.batch import S3Object
from eventpipe.stream.metrics import StreamMetrics

if TYPE_CHECKING:
    from obstore import GetOptions, PutMode

log = logging.getLogger("eventpipe.stream.storage")
RETRYABLE = (BaseError, OSError)  # obstore's errors; a missing object is FileNotFoundError (OSError)
TAKEN = (AlreadyExistsError, PreconditionError)  # 412, or 409 for a concurrent conditional write
CONTENT_TYPE = "application/x-ndjson"
HEAD_ONLY: GetOptions = {"head": True}  # a HEAD request: the object's attributes, no body


UNRECORDED = -1  # an object exists, but without its last-offset metadata (torn write)


class ObjectExists(StorageError):
    """A conditional PUT found the key already taken (another writer got there first)."""


class S3Writer:
    def __init__(
        self, settings: Settings, metrics: StreamMetrics, attempts: int = 6, *, conditional: bool = False
    ) -> None:
        self.store = object_store(settings)
        self.prefix = settings.s3_prefix
        self.metrics = metrics
        self.attempts = attempts
        self.conditional = conditional  # StreamSettings.s3_conditional_put (s3rver has no conditional PUT)

    async def _call(self, op: str, key: str, request: Callable[[], Awaitable[Any]]) -> Any:
        """Run one S3 call with bounded exponential backoff (0.2 s doubling, 5 s cap)."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=0.2, max=5),
            retry=retry_if_exception_type(RETRYABLE),
            reraise=False,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    try:
                        result = await request()
                    except FileNotFoundError as exc:
                        if op == "head":
                            return None
                        self._failed(op, exc, attempt.retry_state.attempt_number)
                        raise
                    except TAKEN as exc:
                        if op == "put":  # not retried: the key is someone else's
                            raise ObjectExists(f"S3 key {key} already exists") from exc
                        self._failed(op, exc, attempt.retry_state.attempt_number)
                        raise
                    except RETRYABLE as exc:
                        self._failed(op, exc, attempt.retry_state.attempt_number)
                        raise
            self.metrics.s3_up.set(1)
            return result
        except RetryError as exc:
            self.metrics.s3_up.set(0)
            cause = exc.last_attempt.exception()
            raise StorageError(f"S3 {op} failed after {self.attempts} attempts") from cause

    def _failed(self, op: str, exc: BaseException, attempt: int) -> None:
        self.metrics.s3_errors.labels(op).inc()
        log.warning("s3 call failed", extra={"op": op, "attempt": attempt, "error": type(exc).__name__})

    async def recorded_last_offset(self, key: str, torn_ok: bool = False) -> int | None:
        """The ``last-offset`` an existing raw or aggregate object recorded, None if there is
        no object (or only the empty file of a raw PUT torn before its body). An object
        without it is a torn write (s3rver can keep the body of a PUT whose client was
        killed, without its metadata): ``UNRECORDED`` if ``torn_ok``, else ``StorageError``."""
        path = self.prefix + key
        head = await self._call("head", key, lambda: obstore.get_async(self.store, path, options=HEAD_ONLY))
        if head is None:
            return None
        value = head.attributes.get("last-offset")
        if value is None:
            if torn_ok:
                return UNRECORDED
            return await self._last_offset_from_lines(key)
        return int(value)

    async def _last_offset_from_lines(self, key: str) -> int | None:
        """A raw object whose metadata was lost (torn write): its cut is recovered from its
        lines, one per offset from the key's first offset. ``events`` offsets are contiguous
        (idempotent, non-transactional producers write no control records; the topic is not
        compacted), so ``first + lines - 1`` is where the cut ended. The loader may already
        have loaded this object, so the replay must reproduce exactly this cut."""
        parsed = parse_raw_key(key)
        path = self.prefix + key

        async def read() -> bytes:
            response = await obstore.get_async(self.store, path)
            return bytes(await response.bytes_async())

        body = await self._call("get", key, read)
        try:
            lines = sum(1 for _ in iter_gzip_lines(body)) if body else 0
        except (OSError, EOFError, ValueError) as exc:  # truncated body too: nothing to recover
            raise StorageError(f"object {key} has no last-offset metadata and unreadable content") from exc
        if not body:
            # torn before its first byte: it records no cut and no reader can have used it
            # (the loader leaves empty objects pending), so the replay writes it as new
            log.warning("empty raw object without metadata: written again", extra={"key": key})
            return None
        if parsed is None or lines == 0:
            raise StorageError(f"object {key} has no last-offset metadata")
        log.warning(
            "raw object without metadata: cut recovered from its lines", extra={"key": key, "lines": lines}
        )
        return parsed[3] + lines - 1

    async def put(self, obj: S3Object, exclusive: bool = False) -> None:
        """Write ``obj`` in one PUT; ``exclusive``: never replace an existing object (needs
        ``s3_conditional_put``; otherwise the caller's HEAD is the only check)."""
        mode: PutMode = "create" if exclusive and self.conditional else "overwrite"
        path, attributes = self.prefix + obj.key, {"Content-Type": CONTENT_TYPE, **obj.metadata}
        await self._call(
            "put",
            obj.key,
            lambda: obstore.put_async(
                self.store, path, obj.body, attributes=attributes, mode=mode, use_multipart=False
            ),
        )
