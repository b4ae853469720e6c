"""The collector's Prometheus metrics, on a registry of its own per app (tests build many)."""

from __future__ import annotations

import contextlib
import time
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Callable
from functools import partial
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

SIZE_BUCKETS = (256, 1024, 4096, 16384, 32768, 65536, 131072, 262144, 524288, 1048576)


class EventNameLabels:
    """Bounded label values for per-event-name counters: the configured (critical) names
    always, then up to ``top`` other names, the rest ``other``. Clients choose event names, so
    an unbounded label would let them blow up Prometheus.

    The ``top`` slots go to names seen often, not to the first ones seen: a name is labelled
    once it was seen ``admit_after`` times in the current window, and when the slots are full
    it takes the slot of the labelled name used least over this window and the last (whose
    series is removed through ``on_evict``). So 60 junk names sent a few times cannot keep a
    real, frequent event in ``other`` (they could until restart). Names are labelled from
    their ``admit_after``-th event in a window on; the first few count as ``other``.
    """

    MAX_CANDIDATES = 10_000  # unlabelled names tracked per window (memory bound)

    def __init__(
        self,
        always: str,
        top: int,
        admit_after: int = 5,
        window_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.always = {name.strip() for name in always.split(",") if name.strip()}
        self.top = top
        self.admit_after = max(1, admit_after)
        self.window_s = window_s
        self.clock = clock
        self.on_evict: Callable[[str], None] = lambda _name: None
        self.labelled: dict[str, int] = {}  # name -> events this window
        self.previous: dict[str, int] = {}  # labelled names' events in the last window
        self.candidates: dict[str, int] = {}
        self.window_started = clock()

    def label(self, name: str, events: int = 1) -> str:
        """The label for ``events`` events of ``name`` (the collector asks once per request
        and name, so a request's events of one name share one label)."""
        if name in self.always:
            return name
        self._roll()
        if name in self.labelled:
            self.labelled[name] += events
            return name
        if len(name) > 64 or self.top <= 0:
            return "other"
        if name not in self.candidates and len(self.candidates) >= self.MAX_CANDIDATES:
            return "other"
        seen = self.candidates[name] = self.candidates.get(name, 0) + events
        if seen >= self.admit_after and self._make_room(seen):
            del self.candidates[name]
            self.labelled[name] = seen
            return name
        return "other"

    def _usage(self, name: str) -> int:
        return self.labelled[name] + self.previous.get(name, 0)

    def _make_room(self, seen: int) -> bool:
        if len(self.labelled) < self.top:
            return True
        weakest = min(self.labelled, key=self._usage)
        if self._usage(weakest) >= seen:
            return False
        del self.labelled[weakest]
        self.previous.pop(weakest, None)
        self.on_evict(weakest)
        return True

    def _roll(self) -> None:
        now = self.clock()
        if now - self.window_started < self.window_s:
            return
        recent = now - self.window_started < 2 * self.window_s
        self.previous = dict(self.labelled) if recent else {}
        self.labelled = dict.fromkeys(self.labelled, 0)
        self.candidates.clear()
        self.window_started = now


def observe_many(histogram: Histogram, amounts: list[int]) -> None:
    """``histogram.observe(a) for a in amounts`` in one update per bucket (the hot path: 100
    events a request). It reaches into prometheus_client's Histogram (``_upper_bounds``,
    ``_buckets``, ``_sum``: one value per bucket, counts not cumulative, as ``observe``
    keeps them); without them (another version) it observes one by one."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:
        for amount in amounts:
            histogram.observe(amount)
        return
    # observe() counts an amount in the first bucket whose bound is >= it: bisect_left
    for index, count in Tally(map(partial(bisect_left, bounds), amounts)).items():
        buckets[index].inc(count)
    total.inc(sum(amounts))


def fast_observe(histogram: Histogram) -> Callable[[float], None]:
    """``histogram.observe`` for the hot path: the bucket found by bisection and two value
    updates, without ``observe``'s Python layers (~1-2 µs each on this machine, three per
    request, issue 16). Reaches into prometheus_client's Histogram as ``observe_many`` does;
    without its internals, ``histogram.observe`` itself."""
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None:
        return histogram.observe
    bucket_incs = [bucket.inc for bucket in buckets]  # as observe(): inc(1) of one bucket
    sum_inc = total.inc

    def observe(amount: float) -> None:
        bucket_incs[bisect_left(bounds, amount)](1)
        sum_inc(amount)

    return observe


def fast_inc(counter: Counter) -> Callable[[float], None]:
    """``counter.inc`` without its checks (a labelled child, amounts never negative): its
    value's own ``inc``, when prometheus_client keeps one (``_value``)."""
    value = getattr(counter, "_value", None)
    return value.inc if value is not None and callable(getattr(value, "inc", None)) else counter.inc


class IngestMetrics:
    def __init__(self, event_names: EventNameLabels | None = None) -> None:
        self.event_names = event_names or EventNameLabels("", 0)
        self._children: dict[tuple[Any, ...], Any] = {}
        self._incs: dict[tuple[Any, ...], Callable[[float], None]] = {}
        self._name_children: dict[str, Any] = {}  # by event-name label; evicted with the label
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_start_time_seconds, RSS, CPU
        r = self.registry
        self.requests = Counter(
            "eventpipe_ingest_requests_total",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=r,
        )
        self.events_accepted = Counter(
            "eventpipe_ingest_events_accepted_total",
            "Events acknowledged by Kafka",
            ["source", "type"],
            registry=r,
        )
        self.events_by_name = Counter(
            "eventpipe_ingest_events_by_name_total",
            "Accepted engagement events by name (bounded: configured + the N most used names, rest 'other')",
            ["event"],
            registry=r,
        )
        self.event_names.on_evict = self._forget_event_name
        self.events_rejected = Counter(
            "eventpipe_ingest_events_rejected_total",
            "Events refused, by reason",
            ["reason"],
            registry=r,
        )
        self.deadletters = Counter(
            "eventpipe_ingest_deadletters_total",
            "Invalid events of accepted batches published to the dead-letter topic, by reason",
            ["reason"],
            registry=r,
        )
        self.publish_failures = Counter(
            "eventpipe_ingest_publish_failures_total",
            "Publishes the broker did not confirm",
            registry=r,
        )
        self.publish_seconds = Histogram(
            "eventpipe_ingest_publish_duration_seconds",
            "Time until Kafka acknowledged a request",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.request_bytes = Histogram(
            "eventpipe_ingest_request_size_bytes",
            "Decompressed request body sizes",
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.event_bytes = Histogram(
            "eventpipe_ingest_event_size_bytes",
            "Encoded event sizes",
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.observe_request_bytes = fast_observe(self.request_bytes)
        self.observe_publish_seconds = fast_observe(self.publish_seconds)
        self._observe_event_bytes = fast_observe(self.event_bytes)
        self.kafka_up = Gauge(
            "eventpipe_ingest_kafka_reachable",
            "1 when the broker answered the last probe",
            registry=r,
        )

    def accepted(self, source: str, types: list[str], names: list[str | None], sizes: list[int]) -> None:
        """One request's accepted events: one counter update per type and per name, not per
        event (the hot path; Counter tallies in C). Sizes stay one observation per event:
        the event size histogram's quantiles are per event."""
        if len(types) == 1:  # a single-event call: no tallies to build (a third of this cost)
            self._inc(self.events_accepted, source, types[0])(1)
            if names[0] is not None:
                self._name_child(self.event_names.label(names[0])).inc()
            self._observe_event_bytes(sizes[0])
            return
        for kind, count in Tally(types).items():
            self._child(self.events_accepted, source, kind).inc(count)
        for name, count in Tally(names).items():
            if name is not None:
                self._name_child(self.event_names.label(name, count)).inc(count)
        observe_many(self.event_bytes, sizes)

    def count_request(self, route: str, status: int) -> None:
        self._inc(self.requests, route, status)(1)

    def _child(self, counter: Counter, *labels: str) -> Any:
        """``counter.labels(*labels)``, looked up once: ``labels()`` takes a lock and checks
        its arguments on every call (a request's most frequent metric work). Only for counters
        whose series are never removed (routes, statuses, sources and types are bounded)."""
        key = (id(counter), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = counter.labels(*labels)
        return child

    def _inc(self, counter: Counter, *labels: str | int) -> Callable[[float], None]:
        """``fast_inc`` of ``counter.labels(*labels)`` (labels as text), looked up once, like
        ``_child``."""
        key = (counter, *labels)
        inc = self._incs.get(key)
        if inc is None:
            inc = self._incs[key] = fast_inc(self._child(counter, *map(str, labels)))
        return inc

    def _name_child(self, label: str) -> Any:
        """``events_by_name.labels(label)``, looked up once per label while it holds its slot."""
        child = self._name_children.get(label)
        if child is None:
            child = self._name_children[label] = self.events_by_name.labels(label)
        return child

    def _forget_event_name(self, name: str) -> None:
        """A name that lost its label slot: its series goes (Prometheus sees a counter end)."""
        self._name_children.pop(name, None)
        with contextlib.suppress(KeyError):
            self.events_by_name.remove(name)


class StatusMetricsMiddleware:
    """Counts every response by route template and status (pure ASGI: cheap)."""

    def __init__(self, app: Callable[..., Any], metrics_of: Callable[[], IngestMetrics | None]) -> None:
        self.app = app
        self.metrics_of = metrics_of

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def capture(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            metrics = self.metrics_of()
            if metrics is not None:
                route = scope.get("route")
                metrics.count_request(getattr(route, "path", "unmatched"), status)
