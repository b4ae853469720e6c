"""The default Kafka client behind ``Publisher``: confluent-kafka (librdkafka), whose I/O
threads work outside the GIL (adapter).

A request's records enter librdkafka's queue with one ``produce_batch`` call per topic: one
Python call instead of one per event (~1 µs of the loop's time per event, issue 16).
librdkafka's partitioner still places each record by its key (``murmur2_random``), as
``produce`` did. It only enqueues (a full queue refuses, it never waits), so it runs on the
event loop: no thread hop per request.

Delivery reports are served by a poll thread; each one runs ``DeliveryBridge.delivered``
under the GIL, one acquisition per message (confluent-kafka has no batch delivery report).
That does not turn into a GIL ping-pong of ~100 waits per 100-event request: the kernel's
counts show the poll thread blocking 2-5 times per request, with the loop saturated too
(each wake-up serves a burst of reports). Serving them on the event
loop instead (``poll(0)`` after each ``produce_batch`` and on a 1 ms timer while records are
in flight, no poll thread, settling the request directly) was measured worse again: open-loop
p99 median 470 vs 177 ms over 11 alternations, closed-loop peak lower in 3 of 3 (likely as an
idle loop learns of a report only at its next timer tick: confluent-kafka does not expose
librdkafka's wake-up fd). See docs/benchmarks.md, "Open-loop tail, session 9" (and "Ingest,
fourth pass", "session 8").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from eventpipe.errors import PublishError
from eventpipe.ingest.publisher import DeliveryBridge, Record, ThreadedPublisher
from eventpipe.settings import Settings


class ConfluentPublisher(ThreadedPublisher):
    send_on_loop = True

    def __init__(self, settings: Settings, overrides: Mapping[str, Any] | None = None) -> None:
        """``overrides``: librdkafka settings over the ones below (a test makes the queue tiny)."""
        from confluent_kafka import Producer

        super().__init__(settings)
        self._producer = Producer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                "client.id": "eventpipe-ingest",
                "acks": "all",
                "enable.idempotence": True,
                # the Java client's (and kafka-python's) key hash: a user's events stay in the
                # partition they were in whichever client wrote them (librdkafka's default is CRC32)
                "partitioner": "murmur2_random",
                "linger.ms": 1,  # latency bounds per-request throughput; librdkafka batches anyway
                "compression.type": settings.kafka_compression,
                "message.timeout.ms": int(settings.publish_timeout_s * 1000),
                "queue.buffering.max.kbytes": 65536,
                **(overrides or {}),
            },
            logger=logging.getLogger("eventpipe.ingest.librdkafka"),  # JSON logs, not raw stderr
        )
        self._running = True
        self._poller = threading.Thread(target=self._poll_forever, name="kafka-poll", daemon=True)
        self._poller.start()

    def _poll_forever(self) -> None:
        while self._running:
            self._producer.poll(0.05)

    def _send_all(self, records: Sequence[Record], bridge: DeliveryBridge) -> None:
        by_topic: dict[str, list[dict[str, Any]]] = {}
        for topic, key, value in records:
            by_topic.setdefault(topic, []).append({"key": key, "value": value})
        for topic, messages in by_topic.items():
            cause: BufferError | None = None
            try:
                queued = self._producer.produce_batch(topic, messages, on_delivery=bridge.delivered)
            except BufferError as exc:
                queued, cause = 0, exc
            # the rest never entered the queue (64 MB queued: the broker is down or slow); those
            # that did may still be stored: a 503 means "unknown", dedup by messageId covers it
            if queued < len(messages):
                raise PublishError("local producer queue full: Kafka is not keeping up") from cause

    def close(self) -> None:
        super().close()
        self._producer.flush(self.timeout_s)
        self._running = False
        self._poller.join(timeout=2)
        self._producer = None  # type: ignore[assignment]  # the last reference: librdkafka's handle and threads go with it
