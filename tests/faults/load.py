"""A bounded load generator on loopback that logs every request's outcome per messageId.

Each event gets a unique ``messageId`` (``<run>-<n>``); a request's answer classifies all
of its events: ``ok`` (2xx: durably in Kafka), ``failed`` (4xx: refused, must never
appear downstream) or ``unknown`` (timeout, 5xx, connection error: may or may not be
stored). The generator stops at ``count`` events or ``duration_s`` seconds, whichever
comes first, and paces itself to spread the events over ``duration_s``.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from eventpipe.synthetic import TrafficShape, messages

OK, FAILED, UNKNOWN = "ok", "failed", "unknown"
# an id retried by a client keeps its best outcome: one 2xx makes it ok for good
RANK = {FAILED: 0, UNKNOWN: 1, OK: 2}


@dataclass
class Outcomes:
    by_id: dict[str, str] = field(default_factory=dict)
    statuses: Counter = field(default_factory=Counter)  # "200", "503", "timeout", ...
    requests: int = 0
    # (sent at, answered at, status) per request, time.monotonic(): which answers fell in an outage
    timeline: list[tuple[float, float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, ids: list[str], outcome: str, status: str, sent_at: float = 0.0) -> None:
        with self.lock:
            self.requests += 1
            self.statuses[status] += 1
            self.timeline.append((sent_at, time.monotonic(), status))
            for mid in ids:
                old = self.by_id.get(mid)
                if old is None or RANK[outcome] > RANK[old]:
                    self.by_id[mid] = outcome

    def answered_between(self, start: float, end: float) -> Counter:
        """Statuses of requests both sent and answered inside ``[start, end]``."""
        with self.lock:
            return Counter(status for sent, done, status in self.timeline if start <= sent and done <= end)

    def ids(self, outcome: str) -> set[str]:
        with self.lock:
            return {mid for mid, o in self.by_id.items() if o == outcome}

    @property
    def sent(self) -> int:
        return len(self.by_id)

    def counts(self) -> dict[str, int]:
        with self.lock:
            c = Counter(self.by_id.values())
        return {OK: c[OK], FAILED: c[FAILED], UNKNOWN: c[UNKNOWN]}


def classify(status: int) -> str:
    if 200 <= status < 300:
        return OK
    if 400 <= status < 500:
        return FAILED
    return UNKNOWN


def event_stream(run_id: str, seed: int = 11) -> Iterator[dict[str, Any]]:
    """Realistic Segment messages (experiments, funnels, page/screen), each with a unique id."""
    shape = TrafficShape(users=100, duplicate_rate=0.0)
    n = itertools.count()
    for s in itertools.count(seed):
        for msg in messages(seed=s * 1000 + 17, shape=shape):
            msg["messageId"] = f"{run_id}-{next(n):07d}"
            msg["anonymousId"] = f"{run_id}-{msg['anonymousId']}"
            if msg.get("userId"):
                msg["userId"] = f"{run_id}-{msg['userId']}"
            yield msg


def send_batch(
    client: httpx.Client, url: str, write_key: str, batch: list[dict[str, Any]], outcomes: Outcomes
) -> str:
    ids = [m["messageId"] for m in batch]
    sent_at = time.monotonic()
    try:
        response = client.post(f"{url}/v1/batch", json={"batch": batch}, auth=(write_key, ""))
    except httpx.TimeoutException:
        outcomes.record(ids, UNKNOWN, "timeout", sent_at)
        return UNKNOWN
    except httpx.TransportError as exc:
        outcomes.record(ids, UNKNOWN, type(exc).__name__, sent_at)
        return UNKNOWN
    outcome = classify(response.status_code)
    if outcome == OK and response.json().get("rejected"):
        raise AssertionError(f"valid events rejected: {response.text[:500]}")
    outcomes.record(ids, outcome, str(response.status_code), sent_at)
    return outcome


class LoadGenerator:
    """``with LoadGenerator(url, count=..., duration_s=...) as load: <inject faults>``;
    the block's end waits for the load to finish. ``retries`` re-sends an unknown batch
    with the same messageIds (as an SDK does) up to that many times."""

    def __init__(
        self,
        url: str,
        *,
        count: int,
        duration_s: float,
        batch_size: int = 20,
        concurrency: int = 2,
        write_key: str = "dev-write-key",
        timeout_s: float = 15.0,
        retries: int = 0,
        run_id: str | None = None,
    ) -> None:
        self.url, self.count, self.duration_s = url, count, duration_s
        self.batch_size, self.concurrency, self.write_key = batch_size, concurrency, write_key
        self.timeout_s, self.retries = timeout_s, retries
        self.run_id = run_id or uuid.uuid4().hex[:8]
        self.outcomes = Outcomes()
        self.sent_messages: dict[str, dict[str, Any]] = {}
        self._events = event_stream(self.run_id)
        self._taken = 0
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.started = self.finished = 0.0

    def _next_batch(self) -> list[dict[str, Any]] | None:
        with self._lock:
            elapsed = time.monotonic() - self.started
            if self._taken >= self.count or elapsed > self.duration_s or self._stop.is_set():
                return None
            # pace: the n-th event is due at n / count of the duration
            due = self.started + self._taken / self.count * self.duration_s
            n = min(self.batch_size, self.count - self._taken)
            batch = [next(self._events) for _ in range(n)]
            self._taken += n
            for m in batch:
                self.sent_messages[m["messageId"]] = m
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return batch

    def _worker(self) -> None:
        timeout = httpx.Timeout(self.timeout_s, connect=3.0)
        with httpx.Client(timeout=timeout) as client:
            while (batch := self._next_batch()) is not None:
                for attempt in range(self.retries + 1):
                    outcome = send_batch(client, self.url, self.write_key, batch, self.outcomes)
                    if outcome != UNKNOWN or self._stop.is_set():
                        break
                    if attempt < self.retries:
                        time.sleep(min(2.0, 0.2 * 2**attempt))
                if outcome == UNKNOWN and not self.retries:
                    time.sleep(0.2)  # a down collector: do not spin

    def start(self) -> LoadGenerator:
        self.started = time.monotonic()
        for i in range(self.concurrency):
            t = threading.Thread(target=self._worker, name=f"load-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def join(self) -> Outcomes:
        # the bound: duration plus one full retry schedule of one request
        for t in self._threads:
            t.join(timeout=self.duration_s + (self.retries + 2) * (self.timeout_s + 3))
        self._stop.set()
        self.finished = time.monotonic()
        return self.outcomes

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.join()

    def wait_for_ok(self, n: int, timeout_s: float = 30.0) -> None:
        """Block until at least ``n`` events were acknowledged (a fault then hits a live load)."""
        deadline = time.monotonic() + timeout_s
        while self.outcomes.counts()[OK] < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"load did not reach {n} ok events: {self.outcomes.statuses}")
            time.sleep(0.1)


def retry_storm(
    pipe: Any, *, count: int, copies: int, kill_collector_after: int, batch_size: int = 20
) -> Outcomes:
    """``copies`` clients send every batch (same messageIds), each retrying its unknowns up
    to 5 times, racing one another; the collector is killed -9 once mid-storm and restarted."""
    events = event_stream(uuid.uuid4().hex[:8])
    batches = [[next(events) for _ in range(batch_size)] for _ in range(count // batch_size)]
    outcomes = Outcomes()
    url = pipe.ingest_url

    def client(offset: int) -> None:
        with httpx.Client(timeout=httpx.Timeout(15.0, connect=3.0)) as http:
            for i in range(len(batches)):
                batch = batches[(i + offset) % len(batches)]
                for attempt in range(6):
                    if send_batch(http, url, "dev-write-key", batch, outcomes) != UNKNOWN:
                        break
                    time.sleep(min(2.0, 0.25 * 2**attempt))

    threads = [threading.Thread(target=client, args=(k * 7,), daemon=True) for k in range(copies)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while outcomes.counts()[OK] < kill_collector_after and time.monotonic() < deadline:
        time.sleep(0.05)
    pipe.kill("ingest")
    time.sleep(1)
    pipe.restart("ingest")
    for t in threads:
        t.join(timeout=180)
    return outcomes
