"""S3 adapter of the stream: bounded, logged retries; library errors become ``StorageError``.

boto3 is synchronous, so every call runs in a worker thread (``asyncio.to_thread``) and
the consumer's event loop keeps heartbeating while S3 is slow or down.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from tenacity import AsyncRetrying, RetryError, retry_if_exception_type, stop_after_attempt, wait_exponential

from eventpipe.errors import StorageError
from eventpipe.s3 import s3_client
from eventpipe.settings import Settings
from eventpipe.stream.batch import S3Object
from eventpipe.stream.metrics import StreamMetrics

log = logging.getLogger("eventpipe.stream.storage")
RETRYABLE = (BotoCoreError, ClientError, OSError)


def _is_missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound")


class S3Writer:
    def __init__(self, settings: Settings, metrics: StreamMetrics, attempts: int = 6) -> None:
        self.client: Any = s3_client(settings)
        self.bucket = settings.s3_bucket
        self.prefix = settings.s3_prefix
        self.metrics = metrics
        self.attempts = attempts

    async def _call(self, op: str, fn: Any, **kwargs: Any) -> Any:
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
                        result = await asyncio.to_thread(fn, **kwargs)
                    except ClientError as exc:
                        if op == "head" and _is_missing(exc):
                            return None
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

    async def recorded_last_offset(self, key: str) -> int | None:
        """The ``last-offset`` an existing object recorded, None if there is no object."""
        head = await self._call("head", self.client.head_object, Bucket=self.bucket, Key=self.prefix + key)
        if head is None:
            return None
        value = head.get("Metadata", {}).get("last-offset")
        if value is None:
            raise StorageError(f"object {key} has no last-offset metadata")
        return int(value)

    async def put(self, obj: S3Object) -> None:
        await self._call(
            "put",
            self.client.put_object,
            Bucket=self.bucket,
            Key=self.prefix + obj.key,
            Body=obj.body,
            Metadata=obj.metadata,
            ContentType="application/x-ndjson",
        )
