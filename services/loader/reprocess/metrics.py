"""Prometheus metrics of the nightly reprocess (``eventpipe_reprocess_*``).

Created per registry on first use (never at import), so the loader service exports them
on its /metrics and tests read a private registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

_BY_REGISTRY: dict[int, ReprocessMetrics] = {}


@dataclass(frozen=True)
class ReprocessMetrics:
    drift_rows: Gauge
    drift_abs_count: Gauge
    drift_abs_users: Gauge
    last_success: Gauge
    last_day: Gauge
    duration: Histogram
    failures: Counter
    events: Gauge
    skipped_objects: Counter

    def record_drift(self, drift: dict[str, Any]) -> None:
        for table, d in drift.items():
            self.drift_rows.labels(table).set(d["rows_changed"])
            self.drift_abs_count.labels(table).set(d["abs_event_count"])
            self.drift_abs_users.labels(table).set(d["abs_user_count"])


def reprocess_metrics(registry: CollectorRegistry | None = None) -> ReprocessMetrics:
    registry = registry or REGISTRY
    found = _BY_REGISTRY.get(id(registry))
    if found is None:
        kw: dict[str, Any] = {"registry": registry}
        found = ReprocessMetrics(
            drift_rows=Gauge(
                "eventpipe_reprocess_drift_rows",
                "rows of the last reprocessed day whose streamed value differed from the final one",
                ["table"],
                **kw,
            ),
            drift_abs_count=Gauge(
                "eventpipe_reprocess_drift_abs_count",
                "sum over rows of |streamed event_count - final event_count|, last reprocessed day",
                ["table"],
                **kw,
            ),
            drift_abs_users=Gauge(
                "eventpipe_reprocess_drift_abs_users",
                "sum over rows of |streamed user_count - final user_count|, last reprocessed day",
                ["table"],
                **kw,
            ),
            last_success=Gauge(
                "eventpipe_reprocess_last_success_timestamp_seconds",
                "unix time of the last successful reprocess (alert when older than 26 h)",
                **kw,
            ),
            last_day=Gauge(
                "eventpipe_reprocess_last_day_timestamp_seconds",
                "the last day made final (unix time of its midnight UTC)",
                **kw,
            ),
            duration=Histogram(
                "eventpipe_reprocess_duration_seconds",
                "wall time of one day's reprocess (job + replacement)",
                buckets=(10, 30, 60, 300, 900, 1800, 3600, 7200, 14400),
                **kw,
            ),
            failures=Counter("eventpipe_reprocess_failures", "reprocess runs that failed", **kw),
            events=Gauge(
                "eventpipe_reprocess_input_lines", "raw lines read by the last day's reprocess", **kw
            ),
            skipped_objects=Counter(
                "eventpipe_reprocess_skipped_objects",
                "raw objects a reprocess left out: reason=quarantined (by the loader), or the loader's "
                "reason code for a corrupt object it has not quarantined (the run then fails)",
                ["reason"],
                **kw,
            ),
        )
        _BY_REGISTRY[id(registry)] = found
    return found
