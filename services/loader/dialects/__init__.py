"""Warehouse dialects behind one interface: ``get_dialect("postgres" | "redshift")``.

A dialect builds SQL (pure ``psycopg2.sql`` composition) and owns the one adapter step
that differs in I/O: staging an object's rows (PostgreSQL streams them through
``COPY FROM STDIN``; Redshift COPYs them itself from S3 with a manifest).
"""

from __future__ import annotations

from typing import Any, Protocol

from psycopg2 import sql

from eventpipe.loader.tables import Column, Table


class Dialect(Protocol):
    name: str

    def type_of(self, kind: str) -> sql.Composable: ...

    def default_of(self, default: str) -> sql.Composable: ...

    def table_options(self, table: Table) -> sql.Composable: ...

    def add_column(self, schema: str, table: Table, column: Column) -> sql.Composed:
        """``ALTER TABLE … ADD COLUMN`` of a column an existing warehouse lacks."""
        ...

    def lock(self, schema: str, table: str) -> sql.Composed:
        """Serialises writers of ``table`` (loads and day replacements) until commit."""
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

    def stage(self, cur: Any, shape: str, batches: list[Any]) -> dict[str, int]:
        """Adapter: puts the batches' rows into the stage; returns rows staged per key."""
        ...

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


def get_dialect(name: str, **options: Any) -> Dialect:
    if name == "postgres":
        from eventpipe.loader.dialects.postgres import PostgresDialect

        return PostgresDialect()
    if name == "redshift":
        from eventpipe.loader.dialects.redshift import RedshiftDialect

        return RedshiftDialect(**options)
    raise ValueError(f"unknown warehouse dialect {name!r}")
