"""The loader's loop: discover batches, load them in groups, quarantine the corrupt.

``Loader.run_once()`` is one round (tests drive it directly); ``run_forever`` repeats it
until stopped. Nothing is ever skipped: a batch leaves ``pending`` only once it is in
the ledger or in quarantine; warehouse outages leave it pending for the next round.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from eventpipe.clock import Clock
from eventpipe.errors import StorageError, WarehouseError, WarehouseRefused
from eventpipe.loader import state
from eventpipe.loader.batches import Batch, CorruptBatch
from eventpipe.loader.discovery import (
    Candidate,
    Notices,
    fetch_batch,
    horizon,
    list_candidates,
    next_watermark,
)
from eventpipe.loader.fetching import Fetching
from eventpipe.loader.listing import Marks
from eventpipe.loader.load import LoadResult, load_group
from eventpipe.loader.metrics import LoaderMetrics
from eventpipe.loader.warehouse import Warehouse, loaded_keys, migrate, quarantine, quarantined_keys
from eventpipe.settings import Settings
from eventpipe.timeutil import parse_ts

log = logging.getLogger(__name__)
LATENCY_SAMPLES = 100  # events per batch observed in the latency histogram


@dataclass
class Limits:
    # objects per transaction: the stream cuts at most 50k events per object, so at most
    # ~8 x 35 MB of lines in memory; small objects (the usual case) group cheaply
    group_objects: int = 8
    scan_interval_s: float = 30.0  # S3 listing (the safety net) from the watermark, this often
    # a catching-up stream can still write raw objects for days back to Kafka's retention:
    # list that whole window now and then
    deep_scan_interval_s: float = 900.0
    deep_scan_days: int = 8
    listing_settle_s: float = 60.0  # a slot's listing mark passes only objects older than this
    prune_interval_s: float = 3600.0  # bookkeeping past the retention is deleted this often
    fetch_threads: int = 4


def retry_counter(metrics: LoaderMetrics) -> Callable[[BaseException], None]:
    """The warehouse's ``on_retry``: each retried error is counted and marks it down."""

    def count(exc: BaseException) -> None:
        metrics.warehouse_errors.labels(type(exc).__name__).inc()
        metrics.warehouse_up.set(0)

    return count


class Loader:
    """Built by ``eventpipe.bootstrap.build_loader``, which chooses the adapters: the
    warehouse (its dialect decides whether objects are downloaded), the S3 client, the
    notices consumer (None: S3 listing only) and the clock."""

    def __init__(
        self,
        settings: Settings,
        *,
        warehouse: Warehouse,
        s3: Any,
        metrics: LoaderMetrics,
        clock: Clock,
        notices: Notices | None = None,
        limits: Limits | None = None,
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        self.settings, self.limits = settings, limits or Limits()
        self.clock, self.metrics, self.s3, self.wh = clock, metrics, s3, warehouse
        self.notices, self.before_commit = notices, before_commit
        self.pending: dict[str, Candidate] = {}
        self._first_seen: dict[str, float] = {}
        self._last_scan = self._last_deep_scan = self._last_prune = -1e18
        self.marks = Marks(settle_s=self.limits.listing_settle_s)  # where each slot's listing starts
        self._pool = ThreadPoolExecutor(self.limits.fetch_threads, thread_name_prefix="loader-fetch")

    def start(self) -> None:
        migrate(self.wh)
        self.metrics.warehouse_up.set(1)
        newest = self.wh.run(lambda conn: state.newest_loaded(conn, self.wh.schema))
        if newest is not None:  # freshness survives restarts
            self._track_freshness(newest)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        if self.notices is not None:
            self.notices.close()
        self.wh.close()

    # discovery -------------------------------------------------------------------------
    def _add(self, candidate: Candidate) -> None:
        if candidate.day is not None and candidate.day < horizon(self.settings, self.clock.now().date()):
            # its ledger row may be pruned already: loading it again could count it twice
            log.warning("object older than the retention: not loaded", extra={"key": candidate.key})
            return
        if candidate.key not in self.pending:
            self.pending[candidate.key] = candidate
            self._first_seen.setdefault(candidate.key, self.clock.monotonic())

    def _scan(self) -> bool:
        mono = self.clock.monotonic()
        if mono - self._last_scan < self.limits.scan_interval_s:
            return False
        self._last_scan = mono
        since = self.wh.run(lambda conn: state.get_watermark(conn, self.wh.schema))
        now = self.clock.now()
        today, marks = now.date(), self.marks
        if since is not None and mono - self._last_deep_scan >= self.limits.deep_scan_interval_s:
            self._last_deep_scan = mono
            since = min(since, today - timedelta(days=self.limits.deep_scan_days))
            marks.covered.clear()  # the deep scan lists its whole window in full
            marks.forget_before(since - timedelta(days=1))
        try:
            found = list_candidates(self.s3, self.settings, since, today, marks, now)
            self.metrics.listed.inc(len(found))
            for candidate in found:
                self._add(candidate)
        except StorageError:
            self.metrics.storage_errors.inc()
            log.exception("S3 listing failed; notices still load")
            return False
        return True

    # one round -------------------------------------------------------------------------
    def run_once(self, poll_s: float = 0.2) -> int:
        """Discover and load; returns the number of objects loaded. Raises
        ``WarehouseError`` when the warehouse stays down (pending batches are kept)."""
        self.metrics.rounds.inc()
        if self.notices is not None:
            for candidate in self.notices.poll(poll_s):
                self.metrics.notices.inc()
                self._add(candidate)
        scanned = self._scan()
        keys = list(self.pending)
        schema = self.wh.schema
        finished = self.wh.run(lambda c: loaded_keys(c, schema, keys) | quarantined_keys(c, schema, keys))
        for key in finished:
            self._forget(key)
        loaded = 0
        for table in sorted({c.table for c in self.pending.values()}):
            group = sorted((c for c in self.pending.values() if c.table == table), key=lambda c: c.key)
            for at in range(0, len(group), self.limits.group_objects):
                loaded += self._load(table, group[at : at + self.limits.group_objects])
        self._after_round(scanned)
        return loaded

    def _forget(self, key: str) -> None:
        self.pending.pop(key, None)
        self._first_seen.pop(key, None)

    def _load(self, table: str, group: list[Candidate]) -> int:
        if self.wh.dialect.reads_s3_itself:
            return self._load_batches(table, [Batch(c.key, table, []) for c in group])
        bucket = self.settings.s3_bucket
        batches = [
            Fetching(c.key, table, self._pool.submit(fetch_batch, self.s3, bucket, c.key, table))
            for c in group
        ]
        return self._load_batches(table, batches)

    def _load_batches(self, table: str, batches: list[Any]) -> int:
        started = time.perf_counter()  # a duration metric: real time even under a test clock
        wh = self.wh
        try:
            result = wh.run(
                lambda conn: load_group(
                    conn, wh.dialect, wh.schema, table, batches, before_commit=self.before_commit
                )
            )
        except (CorruptBatch, StorageError):  # met while streaming the group
            failed = [b for b in batches if isinstance(b, Fetching) and b.failed() is not None]
            for bad in failed:
                problem = bad.failed()
                if isinstance(problem, CorruptBatch):
                    self._quarantine(bad.key, table, problem.reason, problem.detail)
                else:  # S3 unreachable: the batch stays pending for the next round
                    self.metrics.storage_errors.inc()
                    log.warning("S3 read failed; retried next round", extra={"key": bad.key})
            if not failed:
                raise
            rest = [b for b in batches if b not in failed]
            return self._load_batches(table, rest) if rest else 0
        except WarehouseError:
            self.metrics.warehouse_up.set(0)
            raise
        except WarehouseRefused as exc:
            if not exc.data_error:
                raise  # a bug or a permissions problem: no batch is to blame
            if len(batches) > 1:  # the warehouse refused the data: find the culprit, load the others
                return sum(self._load_batches(table, [b]) for b in batches)
            self._quarantine(batches[0].key, table, exc.reason or "rejected_by_warehouse", exc.detail)
            return 0
        self.metrics.warehouse_up.set(1)
        self.metrics.load_seconds.labels(table).observe(time.perf_counter() - started)
        self._record(table, batches, result)
        return len(result.loaded)

    def _record(self, table: str, batches: list[Batch], result: LoadResult) -> None:
        now = self.clock.now()
        for batch in batches:
            if batch.key in result.busy:  # another loader's, in flight: the ledger tells next round
                continue
            self._forget(batch.key)
            if batch.key in result.loaded:
                self.metrics.batches.labels(table).inc()
                self.metrics.rows.labels(table).inc(result.loaded[batch.key])
                for received in batch.sample_received_at(LATENCY_SAMPLES):
                    with suppress(ValueError):  # the warehouse parsed it; Python may be stricter
                        self.metrics.latency.observe(max(0.0, (now - parse_ts(received)).total_seconds()))
            else:
                self.metrics.skipped.labels(table).inc()
        if result.newest_received_at is not None:
            self._track_freshness(result.newest_received_at)

    def _track_freshness(self, newest: datetime) -> None:
        clock = self.clock
        self.metrics.freshness.set_function(lambda: max(0.0, (clock.now() - newest).total_seconds()))

    def _quarantine(self, key: str, table: str, reason: str, detail: str) -> None:
        # the detail (a parser message) can quote payload values: it goes to the quarantine
        # table only, never to the logs
        log.error("batch quarantined", extra={"key": key, "table": table, "reason": reason})
        self.wh.run(lambda conn: quarantine(conn, self.wh.schema, key, table, reason, detail))
        self.metrics.quarantined.labels(reason).inc()
        self._forget(key)

    def _after_round(self, scanned: bool) -> None:
        alert_s = self.settings.unloaded_alert_minutes * 60
        now, mono = self.clock.now(), self.clock.monotonic()
        old = 0
        for key, candidate in self.pending.items():
            if candidate.modified is not None:
                age = (now - candidate.modified).total_seconds()
            else:
                age = mono - self._first_seen.get(key, mono)
            old += age > alert_s
        self.metrics.unloaded_old.set(old)
        self.metrics.unloaded.set(len(self.pending))
        self.marks.advance(set(self.pending), now)
        if scanned:
            mark = next_watermark(list(self.pending.values()), now.date())
            counts = self.wh.run(
                lambda conn: state.save_watermark(conn, self.wh.dialect, self.wh.schema, mark)
            )
            self.metrics.ledger_size.set(counts[0])
            self.metrics.quarantine_size.set(counts[1])
        if self.notices is not None and not self.pending:
            self.notices.commit()  # every notice read so far is loaded or quarantined
        if mono - self._last_prune >= self.limits.prune_interval_s:
            self._last_prune = mono
            schema, days = self.wh.schema, self.settings.loader_retention_days
            deleted = self.wh.run(lambda conn: state.prune_bookkeeping(conn, schema, now, days))
            for table, rows in deleted.items():
                self.metrics.pruned.labels(table).inc(rows)

    def run_forever(self, stop: threading.Event, idle_s: float = 0.5, max_rounds: int | None = None) -> None:
        """Rounds until ``stop`` is set (or ``max_rounds``); errors back off, never end it."""
        backoff, rounds = 1.0, 0
        while not stop.is_set() and (max_rounds is None or rounds < max_rounds):
            rounds += 1
            try:
                loaded = self.run_once(poll_s=idle_s)
                backoff = 1.0
                if not loaded and self.notices is None:
                    stop.wait(idle_s)
            except WarehouseError:
                log.exception("warehouse down; pending batches kept", extra={"pending": len(self.pending)})
                stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
            except StorageError:
                self.metrics.storage_errors.inc()
                log.exception("object store error; retrying")
                stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
            except WarehouseRefused:  # not transient and not the data's fault: keep trying, loudly
                log.exception("warehouse refused a statement; retrying")
                stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)
