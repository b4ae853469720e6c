"""The stream worker's Prometheus metrics, on a registry of its own per app (tests build many)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector


class StreamMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_start_time_seconds, RSS, CPU
        self.events = Counter(
            "eventpipe_stream_events_total",
            "Records consumed from the events topic, by outcome (a replay counts again)",
            ["outcome"],
            registry=r,
        )
        self.lag = Gauge(
            "eventpipe_stream_lag",
            "High-water mark minus committed offset, per owned partition",
            ["partition"],
            registry=r,
        )
        self.batches = Counter(
            "eventpipe_stream_batches_written_total",
            "Objects written to S3, by table",
            ["table"],
            registry=r,
        )
        self.flush_seconds = Histogram(
            "eventpipe_stream_flush_duration_seconds",
            "Time to write one cut (S3 objects, state changelog, notices, commit)",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.cuts = Counter("eventpipe_stream_cuts_total", "Cuts written, by reason", ["reason"], registry=r)
        self.s3_errors = Counter(
            "eventpipe_stream_s3_errors_total", "Failed S3 calls (each attempt)", ["op"], registry=r
        )
        self.flush_failures = Counter(
            "eventpipe_stream_flush_failures_total",
            "Cuts abandoned after bounded retries (offsets not committed, replayed later)",
            registry=r,
        )
        self.fenced = Counter(
            "eventpipe_stream_fenced_total",
            "Cuts dropped unwritten because another worker owns the partition (expelled from the group)",
            registry=r,
        )
        self.state_entries = Gauge(
            "eventpipe_stream_state_entries",
            "Aggregation state entries (seen ids, distinct-user marks, assignments) per partition",
            ["partition"],
            registry=r,
        )
        self.committed = Gauge(
            "eventpipe_stream_committed_offset",
            "Last committed offset per partition",
            ["partition"],
            registry=r,
        )
        self.deadletters = Counter(
            "eventpipe_stream_deadletters_archived_total",
            "Dead letters (events the collector rejected) archived to S3 rejected/ingest/, by reason",
            ["reason"],
            registry=r,
        )
        self.s3_up = Gauge("eventpipe_stream_s3_up", "0 while S3 writes are failing", registry=r)
        self.s3_up.set(1)
