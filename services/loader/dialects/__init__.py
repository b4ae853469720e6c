"""Warehouse dialects behind one interface: ``get_dialect("postgres" | "redshift")``.

Every statement the loader, the nightly job and ``verify`` run comes from this package:
what differs per dialect is a ``Dialect`` method, what both share is a function of
``common``, ``bookkeeping``, ``links``, ``late_links`` or ``truth`` (pure ``psycopg2.sql``
composition). A dialect also owns the adapter steps that differ in I/O: staging an
object's rows (PostgreSQL streams them through ``COPY FROM STDIN``; Redshift COPYs them
itself from S3 with a manifest) and the per-day lock of the nightly job (PostgreSQL: an
advisory lock; Redshift has none: a lock row owned by a live session).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Protocol

from psycopg2 import sql

from eventpipe.loader.tables import Column, Table

Params = Sequence[object] | Mapping[str, object] | None
Statement = sql.Composable  # what callers outside this package pass around (never build)


class Cursor(Protocol):
    """The part of a DB-API cursor the dialects' adapter steps use."""

    def execute(self, query: sql.Composable | str, vars: Params = None) -> object: ...

    def fetchone(self) -> tuple[object, ...] | None: ...

    def fetchall(self) -> list[tuple[object, ...]]: ...


class Staged(Protocol):
    """An object to stage: its key and JSON lines (``batches.Batch`` or one still downloading)."""

    @property
    def key(self) -> str: ...

    @property
    def lines(self) -> list[bytes]: ...

    @property
    def rows(self) -> int: ...


class Dialect(Protocol):
    name: str
    # True: the warehouse reads the objects from S3 itself (COPY with a manifest), so the
    # loader does not download them
    reads_s3_itself: bool

    def type_of(self, kind: str) -> sql.Composable: ...

    def default_of(self, default: str) -> sql.Composable: ...

    def table_options(self, table: Table) -> sql.Composable: ...

    def add_column(self, schema: str, table: Table, column: Column) -> sql.Composed:
        """``ALTER TABLE … ADD COLUMN`` of a column an existing warehouse lacks."""
        ...

    def lock(self, schema: str, table: str) -> sql.Composed:
        """Serialises writers of ``table`` (loads and day replacements) until commit."""
        ...

    def report_views_lock(self) -> list[sql.Composed]:
        """Serialises the (re)creation of the report views until commit (none: the caller
        already holds the migration lock)."""
        ...

    def keyed(self, cur: Cursor, schema: str, tables: Sequence[str]) -> bool:
        """Adapter: True when the warehouse enforces the primary keys of ``tables``, so loads
        may run side by side, each claiming its objects in the ledger (``dialects.upserts``);
        False: every load takes ``lock`` and loads take turns (Redshift)."""
        ...

    def temp_table(self, name: str, body: sql.Composable) -> list[sql.Composed]:
        """(Re)create ``TEMP TABLE name <body>``, gone at the end of the transaction."""
        ...

    def create_stage(self, shape: str) -> list[sql.Composed]: ...

    def indexes(self, schema: str) -> list[sql.Composed]: ...

    def identity_indexes(self, schema: str) -> list[sql.Composed]:
        """What makes ``identities`` fast to resolve an id with (migration 2)."""
        ...

    def utc_date(self, timestamp: sql.Composable) -> sql.Composable:
        """The UTC calendar date of a ``timestamptz`` expression (whatever the session zone)."""
        ...

    def raw_key_indexes(self, schema: str) -> list[sql.Composed]:
        """What finds the events of one raw user key (a late link's days, migration 4)."""
        ...

    def verify_indexes(self, schema: str) -> list[sql.Composed]:
        """What keeps ``eventpipe verify`` of one day from scanning all ``events``."""
        ...

    def typed_source(self, shape: str) -> sql.Composed:
        """A SELECT of the staged rows with the target's column names and types
        (plus ``batch_key``), whatever the dialect's staging layout is."""
        ...

    def merge_events(self, schema: str) -> list[sql.Composed]: ...

    def json_id(self, column: sql.Composable, key: str) -> sql.Composable:
        """``column``'s property ``key`` as text when it is a non-empty string or a number,
        else NULL (``eventpipe.definitions._as_id``: objects, arrays, booleans are no id)."""
        ...

    def drop_temps(self) -> list[sql.Composed]: ...

    def session_setup(self, group: str) -> list[sql.Composed]:
        """Run once per connection: on Redshift ``SET query_group`` routes the session's
        queries to its WLM queue (deploy/redshift/wlm.json); ``group`` is one of QUERY_GROUPS."""
        ...

    def stage(self, cur: Cursor, shape: str, batches: Sequence[Staged]) -> dict[str, int]:
        """Adapter: puts the batches' rows into the stage; returns rows staged per key."""
        ...

    def acquire_day_lock(self, cur: Cursor, schema: str, day: date) -> bool:
        """Adapter, on an autocommit session of its own: take the nightly job's lock of
        ``day`` unless another live session holds it (False then). It dies with the session."""
        ...

    def release_day_lock(self, cur: Cursor, schema: str, day: date) -> None: ...

    def is_retryable(self, exc: BaseException) -> bool:
        """Transient: reconnect/retry the transaction (lost connection, 1023, deadlock)."""
        ...

    def is_data_error(self, exc: BaseException) -> bool:
        """The warehouse refused the batch's data: quarantine it, never retry it."""
        ...

    def data_error_reason(self, exc: BaseException) -> str:
        """The quarantine reason of a data error (bad_json, bad_shape, bad_value)."""
        ...


# the WLM queues each service's sessions run in (docs/loader.md, "Redshift workload management")
LOADER, NIGHTLY, REPORTS = "loader", "nightly", "reports"
QUERY_GROUPS = (LOADER, NIGHTLY, REPORTS)


def query_group_of(application_name: str) -> str:
    """The query group of a connection, from the application name the services give it:
    the nightly job (and its scheduler and lock) is ``nightly``; verify and the reports read
    like dashboards (``reports``); everything else loads (``loader``)."""
    if application_name.startswith("eventpipe-reprocess"):
        return NIGHTLY
    if application_name.startswith(("eventpipe-verify", "eventpipe-reports")):
        return REPORTS
    return LOADER


def get_dialect(
    name: str,
    *,
    iam_role: str | None = None,
    bucket: str = "eventpipe",
    s3: object = None,
    manifest_prefix: str = "manifests/",
) -> Dialect:
    """The dialect ``name``; the options are Redshift's (its COPY role, and the bucket and
    client it writes the COPY manifests with)."""
    if name == "postgres":
        from eventpipe.loader.dialects.postgres import PostgresDialect

        return PostgresDialect()
    if name == "redshift":
        from eventpipe.loader.dialects.redshift import RedshiftDialect

        return RedshiftDialect(iam_role=iam_role, bucket=bucket, s3=s3, manifest_prefix=manifest_prefix)
    raise ValueError(f"unknown warehouse dialect {name!r}")
