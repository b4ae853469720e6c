"""The collector's Prometheus metrics, on a registry of its own per app (tests build many)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

SIZE_BUCKETS = (256, 1024, 4096, 16384, 32768, 65536, 131072, 262144, 524288, 1048576)


class EventNameLabels:
    """Bounded label values for per-event-name counters: the configured (critical) names,
    then the first ``top`` other names seen (frequent names show up first), then ``other``.
    Clients choose event names, so an unbounded label would let them blow up Prometheus."""

    def __init__(self, always: str, top: int) -> None:
        self.allowed = {name.strip() for name in always.split(",") if name.strip()}
        self.room = top

    def label(self, name: str) -> str:
        if name in self.allowed:
            return name
        if self.room > 0 and len(name) <= 64:
            self.room -= 1
            self.allowed.add(name)
            return name
        return "other"


class IngestMetrics:
    def __init__(self, event_names: EventNameLabels | None = None) -> None:
        self.event_names = event_names or EventNameLabels("", 0)
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
            "Accepted engagement events by name (bounded: configured + first N names, rest 'other')",
            ["event"],
            registry=r,
        )
        self.events_rejected = Counter(
            "eventpipe_ingest_events_rejected_total",
            "Events refused, by reason",
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
        self.kafka_up = Gauge(
            "eventpipe_ingest_kafka_reachable",
            "1 when the broker answered the last probe",
            registry=r,
        )
