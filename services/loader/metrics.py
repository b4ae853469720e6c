"""The loader's Prometheus metrics, on a registry of its own (tests build many loaders)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

LATENCY_BUCKETS = (0.5, 1, 2, 5, 10, 15, 20, 30, 45, 60, 120, 300, 600, 1800, 3600)
LOAD_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class LoaderMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_start_time_seconds, RSS, CPU
        self.batches = Counter(
            "eventpipe_loader_batches_loaded_total", "S3 objects loaded, by table", ["table"], registry=r
        )
        self.rows = Counter(
            "eventpipe_loader_rows_loaded_total", "Lines of loaded objects, by table", ["table"], registry=r
        )
        self.skipped = Counter(
            "eventpipe_loader_batches_skipped_total",
            "Objects found already in the ledger at load time (replays, another loader)",
            ["table"],
            registry=r,
        )
        self.load_seconds = Histogram(
            "eventpipe_loader_load_duration_seconds",
            "One load transaction (lock, stage, merge, ledger, commit)",
            ["table"],
            buckets=LOAD_BUCKETS,
            registry=r,
        )
        self.latency = Histogram(
            "eventpipe_loader_event_latency_seconds",
            "receivedAt -> committed in the warehouse, per event (sampled per batch)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.quarantined = Counter(
            "eventpipe_loader_quarantined_total", "Objects set aside, by reason", ["reason"], registry=r
        )
        self.quarantine_size = Gauge(
            "eventpipe_loader_quarantine_objects", "Objects in the quarantine table", registry=r
        )
        self.ledger_size = Gauge("eventpipe_loader_ledger_objects", "Objects in the load ledger", registry=r)
        self.unloaded_old = Gauge(
            "eventpipe_loader_unloaded_old_objects",
            "Objects in S3 older than EVENTPIPE_UNLOADED_ALERT_MINUTES and not loaded (alert on > 0)",
            registry=r,
        )
        self.unloaded = Gauge(
            "eventpipe_loader_unloaded_objects", "Objects discovered and not loaded yet", registry=r
        )
        self.freshness = Gauge(
            "eventpipe_loader_freshness_seconds",
            "Now minus the newest loaded event's receivedAt",
            registry=r,
        )
        self.warehouse_up = Gauge(
            "eventpipe_loader_warehouse_up", "1 if the last warehouse call succeeded", registry=r
        )
        self.warehouse_errors = Counter(
            "eventpipe_loader_warehouse_errors_total",
            "Warehouse errors that were retried, by error class",
            ["error"],
            registry=r,
        )
        self.storage_errors = Counter(
            "eventpipe_loader_storage_errors_total", "S3 reads/listings that failed", registry=r
        )
        self.notices = Counter(
            "eventpipe_loader_notices_total", "Batch-ready notices read from Kafka", registry=r
        )
        self.rounds = Counter("eventpipe_loader_rounds_total", "Discovery/load rounds run", registry=r)
        self.listed = Counter(
            "eventpipe_loader_listed_objects_total",
            "Objects the S3 safety-net listings returned (each slot listed from its mark)",
            registry=r,
        )
        self.pruned = Counter(
            "eventpipe_loader_pruned_rows_total",
            "Bookkeeping rows deleted past EVENTPIPE_LOADER_RETENTION_DAYS, by table",
            ["table"],
            registry=r,
        )
