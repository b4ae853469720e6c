"""End-to-end freshness: POST -> visible in ``events`` and in ``engagement_daily``, p50/p99,
under a steady, bounded load (1,000 events/s for 60 s) through the real pipeline at the
default settings (stream flush interval ``EVENTPIPE_FLUSH_INTERVAL_S``; the bench's own
environment may set it to compare), plus what that flush interval costs: the S3 objects
the stream wrote per minute of load.

Each event's send time is the moment its 2xx arrived; a poller records when its
messageId first appears in ``events``. For ``engagement_daily`` the k-th sent engagement
event counts as visible once today's ``*`` row holds at least k events (the stream and
loader keep per-partition order, so this is close; it never flatters by more than a poll).
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import psycopg2
from psycopg2 import sql

from eventpipe.kafka_admin import create_topics
from eventpipe.s3 import list_keys, s3_client
from eventpipe.settings import Settings
from tests.support.pipeline import running_pipeline

RATE_PER_S = 1000
SECONDS = 60
BATCH = 50


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run() -> dict:
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        events_topic=f"bench-fresh-{tag}", deadletter_topic=f"bench-fresh-{tag}-rejected",
        batches_topic=f"bench-fresh-{tag}-batches", stream_app_id=f"bench-fresh-{tag}",
        s3_prefix=f"bench/fresh-{tag}/", warehouse_schema=f"bench_fresh_{tag}",
    )  # fmt: skip
    create_topics(settings)
    sent: list[tuple[str, float]] = []
    seen: dict[str, float] = {}
    counted_at: list[tuple[int, float]] = []
    stop = threading.Event()
    schema = sql.Identifier(settings.warehouse_schema)

    def poll() -> None:
        conn = psycopg2.connect(settings.warehouse_dsn)
        conn.autocommit = True
        while not stop.is_set():
            now = time.time()
            try:
                with conn.cursor() as cur:
                    cur.execute(sql.SQL("SELECT message_id FROM {}.events").format(schema))
                    for (mid,) in cur.fetchall():
                        seen.setdefault(mid, now)
                    cur.execute(
                        sql.SQL(
                            "SELECT coalesce(sum(event_count), 0) FROM {}.engagement_daily WHERE event = '*'"
                        ).format(schema)
                    )
                    counted_at.append((int(cur.fetchone()[0]), now))
            except psycopg2.Error:  # schema not migrated yet
                pass
            time.sleep(0.25)
        conn.close()

    with (
        tempfile.TemporaryDirectory() as tmp,
        running_pipeline(settings, Path(tmp), fast_flush=False) as pipe,
    ):
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        with httpx.Client(base_url=pipe.ingest_url, auth=("dev-write-key", ""), timeout=30) as client:
            started = time.monotonic()
            n = 0
            while time.monotonic() - started < SECONDS:
                batch = [
                    {"type": "track", "userId": f"u{(n + i) % 500}", "event": "Heartbeat",
                     "messageId": f"{tag}-{n + i}"}
                    for i in range(BATCH)
                ]  # fmt: skip
                response = client.post("/v1/batch", json={"batch": batch})
                if response.status_code == 200:
                    at = time.time()
                    sent.extend((m["messageId"], at) for m in batch)
                n += BATCH
                time.sleep(max(0.0, started + n / RATE_PER_S - time.monotonic()))
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and (len(seen) < len(sent) or counted_at[-1][0] < len(sent)):
            time.sleep(1)
        stop.set()
        poller.join()
    with psycopg2.connect(settings.warehouse_dsn) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))
    objects = _objects_written(settings)

    events_lag = [seen[mid] - at for mid, at in sent if mid in seen]
    agg_lag = []
    for k, (_, at) in enumerate(sent, start=1):
        visible = next((t for count, t in counted_at if count >= k), None)
        if visible is not None:
            agg_lag.append(visible - at)
    return {
        "p50_s": statistics.median(events_lag),
        "p99_s": percentile(events_lag, 0.99),
        "engagement_p50_s": statistics.median(agg_lag),
        "engagement_p99_s": percentile(agg_lag, 0.99),
        "events_sent": len(sent),
        "events_visible": len(events_lag),
        "rate_per_s": RATE_PER_S,
        "flush_interval_s": settings.flush_interval_s,
        "s3_objects_per_min": round(objects * 60 / SECONDS, 1),
    }


def _objects_written(settings: Settings) -> int:
    """The objects the stream wrote under the bench's prefix (raw and agg), then removed."""
    s3 = s3_client(settings)
    keys = [o["Key"] for o in list_keys(s3, settings.s3_bucket, settings.s3_prefix)]
    for key in keys:
        s3.delete_object(Bucket=settings.s3_bucket, Key=key)
    return sum(1 for k in keys if "/raw/" in k or "/agg/" in k)


if __name__ == "__main__":
    print(run())
