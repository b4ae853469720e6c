"""Amazon Redshift: the cluster COPYs the objects itself from S3 (``FORMAT JSON 'auto
ignorecase' GZIP`` through a manifest with ``mandatory: true`` entries, ``MAXERROR 0``; one
COPY per load group, or per object where a row's batch key matters: ``redshift_copy``)
into a temporary stage whose columns are the JSON keys; merges are dedup + DELETE/INSERT
or MERGE inside the load's transaction (Redshift enforces no key: the loader does).

Redshift facts this module is built around (docs/loader.md, PITFALLS.md): no TRUNCATE
inside a transaction (it commits), ``LOCK`` is exclusive and makes writers take turns
(one writer at a time: every load locks the ledger), error 1023 "Serializable isolation
violation" means "retry the transaction", JSON columns are ``SUPER``, ``TEXT`` would be
``VARCHAR(256)``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date
from typing import Any

import psycopg2
from psycopg2 import sql

from eventpipe.loader.dialects import Cursor, Staged
from eventpipe.loader.dialects.common import SRC, STAGE, column_def, earliest_wins, ident
from eventpipe.loader.dialects.redshift_copy import (
    copies,
    copy_count,
    file_rows,
    manifest,
    manifest_key,
    rows_per_object,
    written_manifest,
)
from eventpipe.loader.tables import (
    BIGINT,
    BOOL,
    DATE,
    ID,
    INT,
    JSON,
    LOAD_LEDGER,
    SCHEMA_MIGRATIONS,
    TEXT,
    TS,
    Column,
    Table,
    line_columns,
)

_TYPES = {ID: "VARCHAR(1024)", TEXT: "VARCHAR(65535)", TS: "TIMESTAMPTZ", DATE: "DATE", BIGINT: "BIGINT",
          INT: "INTEGER", BOOL: "BOOLEAN", JSON: "SUPER"}  # fmt: skip
_DEFAULTS = {"false": "FALSE", "now": "GETDATE()"}
DAY_LOCKS = "reprocess_locks"  # the nightly job's per-day lock rows (acquire_day_lock)
_RETRYABLE_TEXT = ("1023", "serializable isolation violation")
_DATA_ERROR_TEXT = ("stl_load_errors", "load into table", "invalid", "cannot insert a null")
log = logging.getLogger(__name__)


def stage_column(json_key: str) -> str:
    """A stage column is named like its JSON key: ``'auto ignorecase'`` matches them."""
    return json_key.lower()


class RedshiftDialect:
    name = "redshift"
    reads_s3_itself = True  # the loader does not download objects: COPY reads them

    def __init__(
        self,
        iam_role: str | None = None,
        bucket: str = "eventpipe",
        s3: Any = None,  # a boto3 S3 client: it writes the COPY manifests
        manifest_prefix: str = "manifests/",
    ) -> None:
        self.iam_role, self.bucket, self.s3, self.manifest_prefix = iam_role, bucket, s3, manifest_prefix

    def type_of(self, kind: str) -> sql.Composable:
        return sql.SQL(_TYPES[kind])

    def default_of(self, default: str) -> sql.Composable:
        return sql.SQL(_DEFAULTS[default])

    def table_options(self, table: Table) -> sql.Composable:
        if table.name == "events":  # merges join on message_id; queries range over time
            return sql.SQL(" DISTKEY ({}) SORTKEY ({})").format(ident("message_id"), ident("received_at"))
        if table.name == "identities":  # resolved by id: co-located with the joins on it
            return sql.SQL(" DISTKEY ({0}) SORTKEY ({0})").format(ident("anonymous_id"))
        if table.name == "experiment_assignments":
            return sql.SQL(" DISTKEY ({}) SORTKEY ({})").format(ident("user_key"), ident("experiment_id"))
        if "day" in table.column_names and table.name != "day_status":
            return sql.SQL(" DISTSTYLE AUTO SORTKEY ({})").format(ident("day"))
        return sql.SQL("")

    def indexes(self, schema: str) -> list[sql.Composed]:
        return []  # no indexes on Redshift: sort keys instead

    def identity_indexes(self, schema: str) -> list[sql.Composed]:
        return []  # the sort key (table_options) serves

    def utc_date(self, timestamp: sql.Composable) -> sql.Composable:
        return sql.SQL("CAST(CONVERT_TIMEZONE('UTC', {}) AS DATE)").format(timestamp)

    def raw_key_indexes(self, schema: str) -> list[sql.Composed]:
        return []  # no indexes; link events are rare, the scan is of two columns

    def verify_indexes(self, schema: str) -> list[sql.Composed]:
        return []  # events are sorted by received_at, within seconds of timestamp for most rows

    def add_column(self, schema: str, table: Table, column: Column) -> sql.Composed:
        # no IF NOT EXISTS here: the migration lock and its transaction make it run once
        return sql.SQL("ALTER TABLE {} ADD COLUMN {}").format(
            ident(schema, table.name), column_def(self, column)
        )

    def report_views_lock(self) -> list[sql.Composed]:
        return []  # no advisory locks: ``warehouse.migrate`` holds the migration lock (``lock``)

    def lock(self, schema: str, table: str) -> sql.Composed:
        # LOCK is ACCESS EXCLUSIVE here: lock the ledger, not the table dashboards read
        locked = SCHEMA_MIGRATIONS.name if table == SCHEMA_MIGRATIONS.name else LOAD_LEDGER.name
        return sql.SQL("LOCK {}").format(ident(schema, locked))

    def keyed(self, cur: Cursor, schema: str, tables: Sequence[str]) -> bool:
        return False  # keys are informational only: loads take turns on the ledger's LOCK

    def temp_table(self, name: str, body: sql.Composable) -> list[sql.Composed]:
        return [
            sql.SQL("DROP TABLE IF EXISTS {}").format(ident(name)),
            sql.SQL("CREATE TEMP TABLE {} {}").format(ident(name), body),
        ]

    def create_stage(self, shape: str) -> list[sql.Composed]:
        defs = [sql.SQL("{} {}").format(ident("batch_key"), self.type_of(ID))]
        defs += [
            sql.SQL("{} {}").format(ident(stage_column(c.key)), self.type_of(c.kind))
            for c in line_columns(shape)
        ]
        return self.temp_table(STAGE, sql.SQL("({})").format(sql.SQL(", ").join(defs)))

    def copy(self, shape: str, manifest_url: str) -> sql.Composed:
        if not self.iam_role:
            raise ValueError("EVENTPIPE_REDSHIFT_IAM_ROLE is required for the redshift dialect")
        columns = sql.SQL(", ").join(ident(stage_column(c.key)) for c in line_columns(shape))
        return sql.SQL(
            "COPY {} ({}) FROM {} IAM_ROLE {} FORMAT AS JSON 'auto ignorecase' GZIP MANIFEST "
            "TIMEFORMAT 'auto' DATEFORMAT 'auto' MAXERROR 0 COMPUPDATE OFF STATUPDATE OFF"
        ).format(ident(STAGE), columns, sql.Literal(manifest_url), sql.Literal(self.iam_role))

    def tag_batch(self, key: str) -> sql.Composed:
        return sql.SQL("UPDATE {} SET {} = {} WHERE {} IS NULL").format(
            ident(STAGE), ident("batch_key"), sql.Literal(key), ident("batch_key")
        )

    def typed_source(self, shape: str) -> sql.Composed:
        fields = [ident("batch_key")] + [
            sql.SQL("{} AS {}").format(ident(stage_column(c.key)), ident(c.name)) for c in line_columns(shape)
        ]
        return sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(fields), ident(STAGE))

    def merge_events(self, schema: str) -> list[sql.Composed]:
        # dedup the stage first (MERGE/INSERT would otherwise meet one key twice)
        return earliest_wins(self, schema, "events", ("received_at", "timestamp"))

    def json_id(self, column: sql.Composable, key: str) -> sql.Composable:
        # SUPER navigation; a string casts to its text, a number serialises as JSON does
        value = sql.SQL("{}.{}").format(column, ident(key))
        return sql.SQL(
            "CASE WHEN JSON_TYPEOF({v}) = 'string' THEN NULLIF(CAST({v} AS VARCHAR), '') "
            "WHEN JSON_TYPEOF({v}) = 'number' THEN JSON_SERIALIZE({v}) END"
        ).format(v=value)

    def drop_temps(self) -> list[sql.Composed]:
        # temp tables live as long as the session: drop them (DROP is transactional; TRUNCATE is not)
        return [sql.SQL("DROP TABLE IF EXISTS {}").format(ident(name)) for name in (SRC, STAGE)]

    def session_setup(self, group: str) -> list[sql.Composed]:
        # WLM routes a session's queries by query group (deploy/redshift/wlm.json)
        return [sql.SQL("SET query_group TO {}").format(sql.Literal(group))]

    def manifest_key(self, keys: Sequence[str]) -> str:
        return manifest_key(self.manifest_prefix, keys)

    def stage_statements(self, shape: str, keys: Sequence[str]) -> list[sql.Composed]:
        """One COPY of ``keys`` (through their manifest), then what counts its rows: per file
        for a group (``redshift_copy.rows_per_object``); one object's rows are tagged with its key."""
        copy = self.copy(shape, f"s3://{self.bucket}/{self.manifest_key(keys)}")
        if len(keys) > 1:
            return [copy, copy_count(), file_rows()]
        return [copy, copy_count(), self.tag_batch(keys[0])]

    def stage(self, cur: Cursor, shape: str, batches: Sequence[Staged]) -> dict[str, int]:
        """The group in one COPY where its rows need no batch key, else one COPY per object
        (``redshift_copy.copies``); a group whose per-file counts do not account for its rows
        is staged again, one COPY per object."""
        keys = [b.key for b in batches]
        rows: dict[str, int] = {}
        for group in copies(shape, keys):
            counted = self._copy(cur, shape, group)
            if counted is None:  # only a group's COPY can fail to count (``_copy``)
                log.warning("COPY's per-file counts incomplete: one per object", extra={"objects": len(keys)})
                for statement in self.create_stage(shape):  # an empty stage (DROP + CREATE: transactional)
                    cur.execute(statement)
                return self._one_by_one(cur, shape, keys)
            rows.update(counted)
        return rows

    def _one_by_one(self, cur: Cursor, shape: str, keys: Sequence[str]) -> dict[str, int]:
        rows: dict[str, int] = {}
        for key in keys:
            rows.update(self._copy(cur, shape, [key]) or {})
        return rows

    def _copy(self, cur: Cursor, shape: str, keys: list[str]) -> dict[str, int] | None:
        """One COPY of ``keys``; their row counts, or None when the COPY's per-file counts
        do not account for its rows."""
        copy, count, then = self.stage_statements(shape, keys)
        with written_manifest(self.s3, self.bucket, self.manifest_key(keys), manifest(self.bucket, keys)):
            cur.execute(copy)
        cur.execute(count)
        found = cur.fetchone()
        total = int(str(found[0])) if found else 0
        cur.execute(then)
        if len(keys) == 1:
            return {keys[0]: total}
        return rows_per_object(self.bucket, keys, cur.fetchall(), total)

    def acquire_day_lock(self, cur: Cursor, schema: str, day: date) -> bool:
        """Redshift has no advisory locks: a row ``(day, holder pid)`` in ``reprocess_locks``,
        written under ``LOCK`` (which waits, then serialises the check-and-insert). A row whose
        holder is no live session (``STV_SESSIONS``: a leader-node table, so it is read on its
        own, never joined with a user table) is a crashed run's: replaced. A reused pid can
        only make a dead holder look alive (the day waits), never let two runs overlap."""
        locks = ident(schema, DAY_LOCKS)
        cur.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} ({} DATE, {} INTEGER, {} TIMESTAMPTZ)").format(
                locks, ident("day"), ident("holder"), ident("acquired_at")
            )
        )
        cur.execute("BEGIN")
        try:
            cur.execute(sql.SQL("LOCK {}").format(locks))
            cur.execute("SELECT process FROM stv_sessions")
            live = {int(str(row[0])) for row in cur.fetchall()}
            cur.execute(sql.SQL("SELECT {} FROM {} WHERE {} = {}").format(
                ident("holder"), locks, ident("day"), sql.Literal(day)
            ))  # fmt: skip
            if any(int(str(row[0])) in live for row in cur.fetchall()):
                cur.execute("ROLLBACK")
                return False
            for statement in (
                sql.SQL("DELETE FROM {} WHERE {} = {}").format(locks, ident("day"), sql.Literal(day)),
                sql.SQL("INSERT INTO {} VALUES ({}, PG_BACKEND_PID(), GETDATE())").format(
                    locks, sql.Literal(day)
                ),
                sql.SQL("COMMIT"),
            ):
                cur.execute(statement)
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return True

    def release_day_lock(self, cur: Cursor, schema: str, day: date) -> None:
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE {} = {} AND {} = PG_BACKEND_PID()").format(
                ident(schema, DAY_LOCKS), ident("day"), sql.Literal(day), ident("holder")
            )
        )

    def is_retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError):
            return True
        text = str(exc).lower()
        return isinstance(exc, psycopg2.Error) and any(marker in text for marker in _RETRYABLE_TEXT)

    def is_data_error(self, exc: BaseException) -> bool:
        text = str(exc).lower()
        return isinstance(exc, psycopg2.DataError) or any(marker in text for marker in _DATA_ERROR_TEXT)

    def data_error_reason(self, exc: BaseException) -> str:
        # the details are in stl_load_errors; the message says which COPY failed
        return "bad_shape" if "null" in str(exc).lower() else "rejected_by_warehouse"
