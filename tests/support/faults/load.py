"""A bounded load generator on loopback that logs every request's outcome per messageId.

Each event gets a unique ``messageId`` (``<run>-<n>``); a request's answer classifies all
of its events: ``ok`` (2xx: durably in Kafka), ``failed`` (4xx: refused, must never
appear downstream) or ``unknown`` (timeout, 5xx, connection error: may or may not be
stored). What was sent is kept (``Outcomes.messages``) with the ``receivedAt`` each 2xx
answer reported, so the checker computes the truth from what was SENT, not from what the
pipeline stored.

The plan is fixed up front: ``count`` events, paced over ``duration_s``, each user's
events on one sender thread in order (so the stream sees every user in order), and every
``refused_every``-th request of a thread followed by a request of valid events with an
unknown write key (401: ``failed`` ids that must never be stored). At the end the
generator fails the test if a sender thread raised, if anything planned was not sent, or
if less than ``min_ok_share`` of the planned events were acknowledged.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from eventpipe.synthetic import TrafficShape, messages

OK, FAILED, UNKNOWN = "ok", "failed", "unknown"
# an id retried by a client keeps its best outcome: one 2xx makes it ok for good
RANK = {FAILED: 0, UNKNOWN: 1, OK: 2}
REFUSED_KEY = "no-such-write-key"


@dataclass
class Outcomes:
    by_id: dict[str, str] = field(default_factory=dict)
    statuses: Counter = field(default_factory=Counter)  # "200", "503", "timeout", ...
    requests: int = 0
    # (sent at, answered at, status) per request, time.monotonic(): which answers fell in an outage
    timeline: list[tuple[float, float, str]] = field(default_factory=list)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)  # payload sent, by id
    received: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # 2xx receivedAt
    # wall-clock (time.time()) windows of attempts whose answer was unknown: a stored copy of
    # such an id carries a receivedAt no answer told, but it must lie inside one of them
    unknown_windows: dict[str, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(
        self,
        batch: list[dict[str, Any]],
        outcome: str,
        status: str,
        sent_at: float = 0.0,
        *,
        received_at: str | None = None,
        wall: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        with self.lock:
            self.requests += 1
            self.statuses[status] += 1
            self.timeline.append((sent_at, time.monotonic(), status))
            for message in batch:
                mid = message["messageId"]
                self.messages.setdefault(mid, message)
                if received_at is not None:
                    self.received[mid].add(received_at)
                if outcome == UNKNOWN:
                    self.unknown_windows[mid].append(wall)
                old = self.by_id.get(mid)
                if old is None or RANK[outcome] > RANK[old]:
                    self.by_id[mid] = outcome

    def answered_between(self, start: float, end: float) -> Counter:
        """Statuses of requests both sent and answered inside ``[start, end]``."""
        with self.lock:
            return Counter(status for sent, done, status in self.timeline if start <= sent and done <= end)

    def in_flight_at(self, moment: float) -> Counter:
        """Statuses of requests sent before ``moment`` (monotonic) and answered after it."""
        with self.lock:
            return Counter(status for sent, done, status in self.timeline if sent < moment < done)

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


def client_skew_s(message: dict[str, Any]) -> float:
    """A fixed clock error per user (as a device's clock is off), up to 5 minutes either way."""
    return zlib.crc32(message["anonymousId"].encode()) % 600_001 / 1000 - 300


def stamp_sent_at(batch: list[dict[str, Any]]) -> None:
    """``sentAt`` = the sending device's clock now, as an SDK sets it when it flushes.

    The synthetic sessions carry the ``sentAt`` of a flush at the end of each session; sent
    here all at once, the skew correction would fold a user's two sessions onto the same
    minutes (each corrected to end "now") and the input would no longer be in order. With
    ``sentAt`` stamped at the real send, a user's corrected timestamps keep the order of
    their client timestamps (gaps of seconds against jitter of milliseconds)."""
    now = datetime.now(UTC)
    for message in batch:
        device_now = now + timedelta(seconds=client_skew_s(message))
        message["sentAt"] = (
            device_now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{device_now.microsecond // 1000:03d}Z"
        )


def send_batch(
    client: httpx.Client, url: str, write_key: str, batch: list[dict[str, Any]], outcomes: Outcomes
) -> str:
    sent_at, wall_start = time.monotonic(), time.time()
    try:
        response = client.post(f"{url}/v1/batch", json={"batch": batch}, auth=(write_key, ""))
    except httpx.TimeoutException:
        outcomes.record(batch, UNKNOWN, "timeout", sent_at, wall=(wall_start, time.time()))
        return UNKNOWN
    except httpx.TransportError as exc:
        outcomes.record(batch, UNKNOWN, type(exc).__name__, sent_at, wall=(wall_start, time.time()))
        return UNKNOWN
    outcome = classify(response.status_code)
    received_at = None
    if outcome == OK:
        answer = response.json()
        if answer.get("rejected"):
            raise AssertionError(f"valid events rejected: {response.text[:500]}")
        received_at = answer["receivedAt"]
    outcomes.record(
        batch,
        outcome,
        str(response.status_code),
        sent_at,
        received_at=received_at,
        wall=(wall_start, time.time()),
    )
    return outcome


@dataclass
class Request:
    due: int  # index of its first event in the plan: due at due / planned * duration
    batch: list[dict[str, Any]]
    write_key: str


def plan_lanes(
    accepted: list[dict[str, Any]], refused: Iterator[dict[str, Any]], lanes: int, batch_size: int, every: int
) -> list[list[Request]]:
    """Each user's events on one lane in their order; a refused request after every
    ``every``-th request of a lane (none if ``every`` is 0)."""
    per_lane: list[list[tuple[int, dict[str, Any]]]] = [[] for _ in range(lanes)]
    for index, message in enumerate(accepted):
        per_lane[zlib.crc32(message["anonymousId"].encode()) % lanes].append((index, message))
    plan: list[list[Request]] = []
    for items in per_lane:
        requests: list[Request] = []
        for n, start in enumerate(range(0, len(items), batch_size)):
            chunk = items[start : start + batch_size]
            requests.append(Request(chunk[0][0], [m for _, m in chunk], ""))
            if every and n % every == every - 1:
                requests.append(Request(chunk[-1][0], [next(refused) for _ in range(5)], REFUSED_KEY))
        plan.append(requests)
    return plan


class LoadGenerator:
    """``with LoadGenerator(url, count=..., duration_s=...) as load: <inject faults>``;
    the block's end waits for the load to finish and checks it ran as planned. ``retries``
    re-sends an unknown batch with the same messageIds (as an SDK does) up to that many times."""

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
        refused_every: int = 10,
        min_ok_share: float = 0.5,
    ) -> None:
        self.url, self.count, self.duration_s = url, count, duration_s
        self.timeout_s, self.retries, self.min_ok_share = timeout_s, retries, min_ok_share
        self.run_id = run_id or uuid.uuid4().hex[:8]
        self.outcomes = Outcomes()
        events = event_stream(self.run_id)
        accepted = [next(events) for _ in range(count)]
        self.lanes = plan_lanes(
            accepted, event_stream(self.run_id + "r"), concurrency, batch_size, refused_every
        )
        for lane in self.lanes:
            for request in lane:
                request.write_key = request.write_key or write_key
        self.planned = {m["messageId"] for lane in self.lanes for r in lane for m in r.batch}
        self.errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.started = self.finished = 0.0

    def _worker(self, lane: list[Request]) -> None:
        try:
            timeout = httpx.Timeout(self.timeout_s, connect=3.0)
            with httpx.Client(timeout=timeout) as client:
                for request in lane:
                    delay = self.started + request.due / self.count * self.duration_s - time.monotonic()
                    if self._stop.wait(max(0.0, delay)):
                        return
                    self._send(client, request)
        except BaseException as exc:  # re-raised by join(): a dead sender must fail the test
            self.errors.append(exc)

    def _send(self, client: httpx.Client, request: Request) -> None:
        stamp_sent_at(request.batch)  # once: a retry re-sends the very same messages
        for attempt in range(self.retries + 1):
            outcome = send_batch(client, self.url, request.write_key, request.batch, self.outcomes)
            if outcome != UNKNOWN or self._stop.is_set():
                return
            if attempt < self.retries:
                time.sleep(min(2.0, 0.2 * 2**attempt))
        time.sleep(0.2)  # a down collector: do not spin

    def start(self) -> LoadGenerator:
        self.started = time.monotonic()
        for i, lane in enumerate(self.lanes):
            t = threading.Thread(target=self._worker, args=(lane,), name=f"load-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def join(self) -> Outcomes:
        """Waits (bounded: the duration, an outage's backlog and one retry schedule) and
        checks that the load ran as planned."""
        deadline = self.started + self.duration_s + 120 + (self.retries + 2) * (self.timeout_s + 3)
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.timeout_s + 5)
        self.finished = time.monotonic()
        if self.errors:
            raise AssertionError(f"a sender thread raised: {self.errors[0]!r}") from self.errors[0]
        unsent = self.planned - set(self.outcomes.by_id)
        assert not unsent, f"{len(unsent)} planned events never sent, e.g. {sorted(unsent)[:3]}"
        ok = len(self.outcomes.ids(OK))
        assert ok >= self.min_ok_share * self.count, (
            f"only {ok} of {self.count} events acknowledged (< {self.min_ok_share:.0%}): "
            f"{dict(self.outcomes.statuses)}"
        )
        return self.outcomes

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:  # the block failed: stop, and let its own error show
            self._stop.set()
            return
        self.join()

    def wait_for_ok(self, n: int, timeout_s: float = 30.0) -> None:
        """Block until at least ``n`` events were acknowledged (a fault then hits a live load)."""
        deadline = time.monotonic() + timeout_s
        while self.outcomes.counts()[OK] < n:
            if self.errors:
                raise AssertionError(f"a sender thread raised: {self.errors[0]!r}") from self.errors[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"load did not reach {n} ok events: {self.outcomes.statuses}")
            time.sleep(0.1)
