"""Publishing to Kafka behind one small async interface (adapter).

``publish()`` resolves only once the broker acknowledged every record (``acks=all``,
idempotent producer), or raises ``PublishError``: a failed or timed-out record's fate is
unknown, so the HTTP answer is 503 and downstream dedup by ``messageId`` covers a retry.
The blocking ``send()`` (it can wait for metadata) runs in a thread, never on the loop;
delivery callbacks from the client's I/O thread are bridged to asyncio futures.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from eventpipe.errors import ConfigurationError, PublishError
from eventpipe.settings import Settings

log = logging.getLogger(__name__)
Record = tuple[str, bytes | None, bytes]  # topic, key, value


class Publisher(Protocol):
    async def publish(self, records: Sequence[Record]) -> None: ...

    def close(self) -> None: ...


def broker_reachable(bootstrap: str, timeout_s: float = 1.0) -> bool:
    """A TCP connect to any bootstrap broker: cheap, and honest about a dead broker."""
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
                return True
        except OSError:
            continue
    return False


class DeliveryBridge:
    """Counts down one request's deliveries and settles one asyncio future, failed if the
    deadline (``arm``) passes first. A timer handle, not ``asyncio.timeout``: the context
    manager's bookkeeping cost ~3% of a single-event request's main thread (issue 16).

    Reports arrive on a client's own thread (confluent's poll thread, kafka-python's sender,
    a flush at shutdown): the count is an ``itertools.count`` (one atomic step under the
    GIL: no lock per report), the result goes to the loop thread-safely, once."""

    def __init__(self, loop: asyncio.AbstractEventLoop, expected: int) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.expected = expected
        self._acks = itertools.count(1)
        self.deadline: asyncio.TimerHandle | None = None

    def arm(self, timeout_s: float) -> None:
        if not self.future.done():
            self.deadline = self.loop.call_later(timeout_s, self._expire, timeout_s)

    def _expire(self, timeout_s: float) -> None:
        if not self.future.done():
            self.future.set_exception(PublishError(f"no broker acknowledgement within {timeout_s}s"))

    def _settle(self, error: BaseException | None) -> None:
        if self.future.done():
            return
        if self.deadline is not None:
            self.deadline.cancel()
        if error is None:
            self.future.set_result(None)
        else:
            self.future.set_exception(PublishError(f"broker did not acknowledge: {error!r}"))

    def ok(self, *_: object) -> None:
        if next(self._acks) == self.expected:
            self.loop.call_soon_threadsafe(self._settle, None)

    def failed(self, error: BaseException) -> None:
        self.loop.call_soon_threadsafe(self._settle, error)

    def delivered(self, error: object, _message: object) -> None:
        """confluent-kafka's delivery report for one record (``error`` is None on success)."""
        if error is None:
            if next(self._acks) == self.expected:
                self.loop.call_soon_threadsafe(self._settle, None)
        else:
            self.loop.call_soon_threadsafe(self._settle, RuntimeError(str(error)))


class ThreadedPublisher:
    """Shared shape: ``_send_all`` runs in a small thread pool (or on the loop, for a client
    whose sends never block), results come back by callback."""

    send_on_loop = False

    def __init__(self, settings: Settings) -> None:
        self.timeout_s = settings.publish_timeout_s
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="kafka-send")

    def _send_all(self, records: Sequence[Record], bridge: DeliveryBridge) -> None:
        raise NotImplementedError

    async def publish(self, records: Sequence[Record]) -> None:
        if not records:
            return
        loop = asyncio.get_running_loop()
        bridge = DeliveryBridge(loop, len(records))
        try:
            if self.send_on_loop:
                self._send_all(records, bridge)
            else:
                await loop.run_in_executor(self._pool, self._send_all, records, bridge)
            bridge.arm(self.timeout_s)  # from here, as before: a blocked send() does not count
            await bridge.future
        except PublishError:
            raise
        except Exception as exc:  # the client's own errors, translated at the boundary
            raise PublishError(f"send failed: {exc!r}") from exc

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class KafkaPythonPublisher(ThreadedPublisher):
    """kafka-python (``EVENTPIPE_KAFKA_CLIENT=kafka-python``): pure Python, supported and
    tested behind the same interface, about a quarter of librdkafka's throughput here."""

    def __init__(self, settings: Settings) -> None:
        from kafka import KafkaProducer

        super().__init__(settings)
        timeout_ms = int(settings.publish_timeout_s * 1000)
        self._producer = KafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            client_id="eventpipe-ingest",
            acks="all",  # explicit: any other value would silently disable idempotence
            enable_idempotence=True,
            linger_ms=5,
            batch_size=512 * 1024,
            compression_type=None if settings.kafka_compression == "none" else settings.kafka_compression,
            max_request_size=1024 * 1024,
            max_block_ms=min(5000, timeout_ms),
            request_timeout_ms=max(1000, timeout_ms - 1000),
            delivery_timeout_ms=timeout_ms,
            retry_backoff_ms=100,
        )

    def _send_all(self, records: Sequence[Record], bridge: DeliveryBridge) -> None:
        for topic, key, value in records:
            self._producer.send(topic, key=key, value=value).add_callback(bridge.ok).add_errback(
                bridge.failed
            )

    def close(self) -> None:
        super().close()
        self._producer.flush(timeout=self.timeout_s)
        self._producer.close(timeout=self.timeout_s)


def _connect(settings: Settings) -> Publisher:
    if settings.kafka_client == "kafka-python":
        return KafkaPythonPublisher(settings)
    from eventpipe.ingest.confluent import ConfluentPublisher  # it imports this module

    return ConfluentPublisher(settings)


class LazyPublisher:
    """Connects in the background, so the collector starts (and answers /healthz, and 503s)
    while Kafka is down; publishes wait for the connection within the publish timeout.

    It also heals: kafka-python's idempotent producer can stay wedged after the broker is
    killed and restarted (every send times out although the broker is back). When publishes
    have failed for ``2 x publish_timeout`` while a broker accepts connections, the client is
    replaced by a fresh one (the old one is closed in the background).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kafka-connect")
        self._closed = threading.Event()
        self._connecting = self._pool.submit(self._connect_until_done)
        self.failing_since: float | None = None
        self.reconnects = 0

    def _connect_until_done(self) -> Publisher:
        while True:
            try:
                return _connect(self.settings)
            except Exception:  # broker down at start-up: keep trying, requests get 503 meanwhile
                if self._closed.wait(1.0):
                    raise
                continue

    async def _client(self) -> Publisher:
        connecting = self._connecting
        if connecting.done():  # the usual case: no future to wrap and wait on per request
            return connecting.result()
        try:
            return await asyncio.wait_for(asyncio.wrap_future(connecting), self.settings.publish_timeout_s)
        except TimeoutError as exc:
            raise PublishError("not connected to Kafka yet") from exc

    async def publish(self, records: Sequence[Record]) -> None:
        inner = await self._client()
        try:
            await inner.publish(records)
        except PublishError:
            await self._maybe_reconnect()
            raise
        self.failing_since = None

    async def _maybe_reconnect(self) -> None:
        now = time.monotonic()
        self.failing_since = self.failing_since or now
        if now - self.failing_since < 2 * self.settings.publish_timeout_s or not self._connecting.done():
            return
        if not await asyncio.to_thread(broker_reachable, self.settings.kafka_bootstrap):
            return  # the broker is down: a new client would not help
        stale = self._connecting.result()
        log.warning("publishes keep failing while Kafka is reachable: replacing the producer")
        self.reconnects += 1
        self.failing_since = None
        self._connecting = self._pool.submit(self._connect_until_done)
        self._pool.submit(stale.close)

    def close(self) -> None:
        self._closed.set()
        if self._connecting.done() and self._connecting.exception() is None:
            self._connecting.result().close()
        self._pool.shutdown(wait=False, cancel_futures=True)


def require_codec(settings: Settings) -> None:
    """A missing compression library is a set-up error, not a Kafka outage: refuse to start
    (kafka-python would raise on every connection attempt and every request would be a 503)."""
    if settings.kafka_client == "kafka-python" and settings.kafka_compression == "lz4":
        from kafka.codec import has_lz4

        if not has_lz4():
            raise ConfigurationError(
                "EVENTPIPE_KAFKA_COMPRESSION=lz4 needs the 'lz4' package: reinstall eventpipe "
                "(.venv/bin/pip install -e .) or set EVENTPIPE_KAFKA_COMPRESSION=none"
            )


def create_publisher(settings: Settings) -> Publisher:
    require_codec(settings)
    return LazyPublisher(settings)
