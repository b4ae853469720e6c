"""The warehouse adapter: connections, bounded retries, and the loader's public API.

Other services (the nightly reprocess, reports, status) use these functions rather than
writing SQL against the loader's tables:

- ``connect(settings)`` / ``Warehouse(settings, dialect)``: a connection (with retries) and
  dialect (services get theirs from ``eventpipe.bootstrap.build_warehouse``);
- ``migrate(wh)``: create/upgrade the schema (idempotent);
- ``replace_day(conn, dialect, schema, day, cutoff_day, corrections, contained)``: the
  nightly day replacement of contracts §6, in one transaction;
- ``held_day_lock(settings, dialect, day)``: the nightly job's lock of one day;
- ``loaded_keys`` / ``quarantined_keys`` / ``quarantine``: ledger and quarantine look-ups.

Connections come from ``connection`` (the only module that opens them); ``run`` translates
what the driver raises into ``WarehouseError`` (down after bounded retries) or
``WarehouseRefused`` (a statement refused), so callers catch eventpipe errors only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any, TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from eventpipe.errors import WarehouseError, WarehouseRefused
from eventpipe.loader import migrations
from eventpipe.loader.batches import Batch
from eventpipe.loader.connection import DriverError, open_connection
from eventpipe.loader.dialects import Cursor, Dialect
from eventpipe.loader.dialects.common import (
    delete_day,
    earliest_wins,
    insert_final,
    keys_in,
    late_deltas_source,
    mark_day_final,
    merge_add,
    quarantine_insert,
    record_final_batches,
    record_watermark,
)
from eventpipe.loader.dialects.links import retire_linked_assignments
from eventpipe.loader.tables import AGGREGATES, LOAD_LEDGER, QUARANTINE
from eventpipe.settings import Settings
from eventpipe.timeutil import utcnow

log = logging.getLogger(__name__)
T = TypeVar("T")


def connect(settings: Settings, application_name: str = "eventpipe-loader") -> Any:
    """A connection of the settings' warehouse (not autocommit: every load is an explicit
    transaction); the driver's errors as they are, for ``Warehouse.run`` to classify."""
    return open_connection(settings.warehouse_dsn, application_name, dialect=settings.warehouse_dialect)


class Warehouse:
    """One connection plus the retry policy: retryable errors (lost connection, server
    restart, serialization failure) reconnect and retry with exponential backoff, at most
    ``attempts`` times, then ``WarehouseError``. Data errors are raised at once."""

    def __init__(
        self,
        settings: Settings,
        dialect: Dialect,
        *,
        attempts: int = 8,
        max_wait_s: float = 10.0,
        application_name: str = "eventpipe-loader",
        on_retry: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.settings, self.schema = settings, settings.warehouse_schema
        self.dialect = dialect
        self.attempts, self.max_wait_s = attempts, max_wait_s
        self.application_name, self.on_retry = application_name, on_retry
        self._conn: Any = None

    @property
    def conn(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.settings, self.application_name)
        return self._conn

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn = None

    def _before_retry(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "warehouse unavailable, retrying",
            extra={"attempt": state.attempt_number, "error": type(exc).__name__, "detail": str(exc)[:200]},
        )
        self.close()  # the next attempt reconnects
        if self.on_retry is not None and exc is not None:
            self.on_retry(exc)

    def run(self, work: Callable[[Any], T]) -> T:
        """``work(conn)`` with bounded retries; ``WarehouseError`` when they run out."""
        retrying = Retrying(
            retry=retry_if_exception(self.dialect.is_retryable),
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=0.2, max=self.max_wait_s),
            before_sleep=self._before_retry,
            reraise=True,
        )
        try:
            return retrying(lambda: work(self.conn))
        except DriverError as exc:
            if self.dialect.is_retryable(exc):
                self.close()
                raise WarehouseError(f"warehouse unavailable after {self.attempts} attempts: {exc}") from exc
            data_error = self.dialect.is_data_error(exc)
            reason = self.dialect.data_error_reason(exc) if data_error else None
            raise WarehouseRefused(str(exc.pgerror or exc), data_error=data_error, reason=reason) from exc


@contextmanager
def held_day_lock(settings: Settings, dialect: Dialect, day: date) -> Iterator[bool]:
    """The nightly job's lock of ``day`` on a session of its own (autocommit): yields
    whether it was taken; held until the block ends (or the session dies with a crash)."""
    try:
        conn = connect(settings, "eventpipe-reprocess-lock")
    except DriverError as exc:
        raise WarehouseError(f"cannot connect to the warehouse for the day lock: {exc}") from exc
    conn.autocommit = True
    schema = settings.warehouse_schema
    try:
        with conn.cursor() as cur:
            held = dialect.acquire_day_lock(cur, schema, day)
            try:
                yield held
            finally:
                if held:
                    dialect.release_day_lock(cur, schema, day)
    finally:
        conn.close()


def migrate(wh: Warehouse) -> list[int]:
    """The schema, then the report views analysts query (plain views on both dialects; the
    ``experiment_results`` function on PostgreSQL only: Redshift SQL functions cannot return
    tables, see docs/reports.md)."""
    applied = wh.run(lambda conn: migrations.migrate(conn, wh.dialect, wh.schema))
    from eventpipe.reports.views import ensure_report_views

    wh.run(lambda conn: ensure_report_views(conn, wh.schema, wh.dialect))
    return applied


def _keys(conn: Any, schema: str, table: Any, keys: Sequence[str]) -> set[str]:
    found: set[str] = set()
    with conn, conn.cursor() as cur:
        for at in range(0, len(keys), 1000):
            cur.execute(keys_in(schema, table, keys[at : at + 1000]))
            found.update(row[0] for row in cur.fetchall())
    return found


def loaded_keys(conn: Any, schema: str, keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` the load ledger holds (each is loaded, exactly once)."""
    return _keys(conn, schema, LOAD_LEDGER, keys) if keys else set()


def quarantined_keys(conn: Any, schema: str, keys: Sequence[str]) -> set[str]:
    return _keys(conn, schema, QUARANTINE, keys) if keys else set()


def quarantine(conn: Any, schema: str, key: str, table: str, reason: str, detail: str) -> None:
    """Set an object aside with its reason; delete its row to have it loaded again."""
    with conn, conn.cursor() as cur:
        for statement in quarantine_insert(schema, key, table, reason, detail, utcnow()):
            cur.execute(statement)


def replace_day(
    conn: Any,
    dialect: Dialect,
    schema: str,
    day: date,
    cutoff_day: date,
    corrections: Mapping[str, Batch],
    contained: Sequence[str] = (),
    objects: int = 0,
    measure: Callable[[Cursor], T] | None = None,
) -> T | None:
    """Make day ``day`` final, in one transaction (contracts §6); returns what ``measure``
    returned (None without it).

    ``corrections`` maps ``engagement_daily`` / ``experiment_daily`` to the nightly job's
    rows for that day (a ``Batch`` of shape ``<table>:final``: totals, no received_day)
    and optionally ``experiment_assignments`` to its assignments. Build them with
    ``batches.parse_batch(key, "<table>:final", body)`` from ``corrections/dt=D/…`` or
    ``batches.batch_from_rows``. ``contained`` lists the aggregate batch keys whose events
    the corrected rows contain (``keys.cut_agg_key`` of every raw object the job listed),
    recorded in ``final_batches``. ``measure(cur)`` runs once the locks are held and those
    keys recorded, before anything is replaced: the nightly job reads the rows it is about
    to replace there (drift), so no load slips in between. For each aggregate table: day
    D's rows := corrected rows (``is_final``) + the kept deltas of D whose batch is not
    contained; assignments are upserted (earliest wins); ``day_status(D)`` := final with
    ``cutoff_day``, and its ``day_watermark`` untouched. Loads of those tables wait for
    this transaction (same locks), so none is half-applied.
    """
    at = utcnow()
    with conn, conn.cursor() as cur:
        for table in (*AGGREGATES, "experiment_assignments"):
            cur.execute(dialect.lock(schema, table))
        for statement in record_final_batches(schema, day, contained):
            cur.execute(statement)
        measured = measure(cur) if measure is not None else None
        for table in AGGREGATES:
            shape = f"{table}:final"
            for statement in dialect.create_stage(shape):
                cur.execute(statement)
            batch = corrections.get(table)
            if batch is not None:
                dialect.stage(cur, shape, [batch])
            for statement in (
                delete_day(schema, table, day),
                insert_final(dialect, schema, table),
                *late_deltas_source(dialect, schema, table, day),
                merge_add(schema, table),
            ):
                cur.execute(statement)
        assignments = corrections.get("experiment_assignments")
        if assignments is not None:
            for statement in dialect.create_stage("experiment_assignments"):
                cur.execute(statement)
            dialect.stage(cur, "experiment_assignments", [assignments])
            for statement in earliest_wins(
                dialect, schema, "experiment_assignments", ("first_exposed_at", "variant")
            ):
                cur.execute(statement)
        cur.execute(retire_linked_assignments(schema, day + timedelta(days=1)))
        final = (*mark_day_final(schema, day, cutoff_day, at), *record_watermark(schema, day, objects, at))
        for statement in final:
            cur.execute(statement)
        for statement in dialect.drop_temps():
            cur.execute(statement)
    return measured
