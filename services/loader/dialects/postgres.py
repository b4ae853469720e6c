"""PostgreSQL (15+): rows stream from S3 through ``COPY FROM STDIN`` into a temporary
stage of JSON lines (objects still downloading while earlier ones are sent); typed
columns are extracted in SQL; events merge with ``MERGE``.

The stage holds each line as ``jsonb`` (CSV with control-character quote/delimiter,
which valid JSON can never contain unescaped), so COPY never needs to understand the
line and one stage layout serves every table.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from datetime import date

import psycopg2
from psycopg2 import errors, sql

from eventpipe.loader.dialects import Cursor, Staged
from eventpipe.loader.dialects.common import STAGE, cols, column_def, ident
from eventpipe.loader.tables import (
    BIGINT,
    BOOL,
    DATE,
    DELTAS,
    EVENTS,
    ID,
    INT,
    JSON,
    TEXT,
    TS,
    Column,
    Table,
    line_columns,
)

_TYPES = {ID: "TEXT", TEXT: "TEXT", TS: "TIMESTAMPTZ", DATE: "DATE", BIGINT: "BIGINT", INT: "INTEGER",
          BOOL: "BOOLEAN", JSON: "JSONB"}  # fmt: skip
_DEFAULTS = {"false": "FALSE", "now": "now()"}
_CASTS = {TS: "timestamptz", DATE: "date", BIGINT: "bigint", INT: "integer", BOOL: "boolean"}
_DELIMITER, _QUOTE = b"\x02", b"\x01"
COPY_CHUNK = 1 << 20
WORK_MEM = "64MB"  # per sort, for the load transaction only


REPORT_VIEWS_LOCK = 0x65766E74  # arbitrary, constant: "evnt"


def day_lock_ids(schema: str, day: date) -> tuple[int, int]:
    """The advisory lock's two int4 keys: a namespace per warehouse schema, and the day."""
    return zlib.crc32(f"eventpipe.reprocess:{schema}".encode()) - 2**31, day.toordinal()


def _lock_literals(schema: str, day: date) -> list[sql.Literal]:
    return [sql.Literal(k) for k in day_lock_ids(schema, day)]


class _ChunkReader:
    """A read()-able view of an iterator of byte chunks, for ``copy_expert`` (no copying
    of the unread rest on each read: chunks can be tens of MB)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._chunk = memoryview(b"")
        self._at = 0
        self.error: BaseException | None = None  # psycopg2 reports a read() error as QueryCanceled

    def read(self, size: int = -1) -> bytes:
        while self._at >= len(self._chunk):
            try:
                chunk = next(self._chunks, None)
            except BaseException as exc:
                self.error = exc
                raise
            if chunk is None:
                return b""
            self._chunk, self._at = memoryview(chunk), 0
        end = len(self._chunk) if size < 0 else self._at + size
        out = bytes(self._chunk[self._at : end])
        self._at += len(out)
        return out

    def readline(self, size: int = -1) -> bytes:  # pragma: no cover - copy_expert uses read()
        return self.read(size)


class PostgresDialect:
    name = "postgres"
    reads_s3_itself = False  # rows stream from the loader's downloads through COPY FROM STDIN

    def type_of(self, kind: str) -> sql.Composable:
        return sql.SQL(_TYPES[kind])

    def default_of(self, default: str) -> sql.Composable:
        return sql.SQL(_DEFAULTS[default])

    def table_options(self, table: Table) -> sql.Composable:
        return sql.SQL("")

    def indexes(self, schema: str) -> list[sql.Composed]:
        return [
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({}, {})").format(
                ident(f"{d.name}_day_idx"), ident(schema, d.name), ident("day"), ident("received_day")
            )
            for d in DELTAS.values()
        ]

    def identity_indexes(self, schema: str) -> list[sql.Composed]:
        return [
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({}, {}, {})").format(
                ident("identities_anonymous_id_idx"), ident(schema, "identities"),
                ident("anonymous_id"), ident("linked_at"), ident("message_id"),
            )
        ]  # fmt: skip

    def utc_date(self, timestamp: sql.Composable) -> sql.Composable:
        return sql.SQL("CAST(({} AT TIME ZONE 'UTC') AS DATE)").format(timestamp)

    def raw_key_indexes(self, schema: str) -> list[sql.Composed]:
        # the expression exactly as truth.RAW_KEY writes it, so the planner can use it
        return [
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ((COALESCE(NULLIF({}, ''), {})))").format(
                ident("events_raw_key_idx"), ident(schema, "events"), ident("user_id"), ident("anonymous_id")
            )
        ]

    def verify_indexes(self, schema: str) -> list[sql.Composed]:
        # a day's events by timestamp; every exposure (assignments) without the other events
        return [
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
                ident("events_timestamp_idx"), ident(schema, "events"), ident("timestamp")
            ),
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({}) WHERE {} = {}").format(
                ident("events_exposure_idx"), ident(schema, "events"), ident("timestamp"), ident("event"),
                sql.Literal("Experiment Viewed"),
            ),
        ]  # fmt: skip

    def add_column(self, schema: str, table: Table, column: Column) -> sql.Composed:
        return sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {}").format(
            ident(schema, table.name), column_def(self, column)
        )

    def report_views_lock(self) -> list[sql.Composed]:
        # concurrent CREATE OR REPLACE VIEW of one view fail ("tuple concurrently updated")
        return [sql.SQL("SELECT pg_advisory_xact_lock({})").format(sql.Literal(REPORT_VIEWS_LOCK))]

    def lock(self, schema: str, table: str) -> sql.Composed:
        # self-conflicting, but readers (ACCESS SHARE) are never blocked by a load
        return sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(ident(schema, table))

    def keyed(self, cur: Cursor, schema: str, tables: Sequence[str]) -> bool:
        # a warehouse whose keys were dropped (as Redshift has none) falls back to the lock
        cur.execute(
            sql.SQL(
                "SELECT COUNT(DISTINCT c.conrelid) FROM pg_constraint AS c "
                "JOIN pg_class AS t ON t.oid = c.conrelid JOIN pg_namespace AS n ON n.oid = t.relnamespace "
                "WHERE c.contype = 'p' AND n.nspname = {} AND t.relname IN ({})"
            ).format(sql.Literal(schema), sql.SQL(", ").join(sql.Literal(t) for t in tables))
        )
        row = cur.fetchone()
        return row is not None and row[0] == len(set(tables))

    def temp_table(self, name: str, body: sql.Composable) -> list[sql.Composed]:
        return [
            sql.SQL("DROP TABLE IF EXISTS {}").format(ident(name)),
            sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP {}").format(ident(name), body),
        ]

    def create_stage(self, shape: str) -> list[sql.Composed]:
        return [
            # the stage's dedup sort fits in memory; JIT only costs on these short queries
            sql.SQL("SET LOCAL work_mem = {}").format(sql.Literal(WORK_MEM)),
            sql.SQL("SET LOCAL jit = off"),
            sql.SQL("DROP TABLE IF EXISTS {}").format(ident(STAGE)),
            sql.SQL("CREATE TEMP TABLE {} ({} TEXT, {} JSONB) ON COMMIT DROP").format(
                ident(STAGE), ident("batch_key"), ident("doc")
            ),
        ]

    def copy_stage(self) -> sql.Composed:
        return sql.SQL("COPY {} ({}, {}) FROM STDIN WITH (FORMAT csv, DELIMITER {}, QUOTE {})").format(
            ident(STAGE), ident("batch_key"), ident("doc"),
            sql.Literal(_DELIMITER.decode()), sql.Literal(_QUOTE.decode()),
        )  # fmt: skip

    def typed_source(self, shape: str) -> sql.Composed:
        fields = [sql.SQL("{}").format(ident("batch_key"))]
        for c in line_columns(shape):
            if c.kind == JSON:  # a JSON null is stored as SQL NULL
                expr = sql.SQL("NULLIF({} -> {}, 'null'::jsonb)").format(ident("doc"), sql.Literal(c.key))
            else:
                expr = sql.SQL("({} ->> {})").format(ident("doc"), sql.Literal(c.key))
                if c.kind in _CASTS:
                    expr = sql.SQL("{}::{}").format(expr, sql.SQL(_CASTS[c.kind]))
            fields.append(sql.SQL("{} AS {}").format(expr, ident(c.name)))
        return sql.SQL("SELECT {} FROM {}").format(sql.SQL(", ").join(fields), ident(STAGE))

    def merge_events(self, schema: str) -> list[sql.Composed]:
        """Insert absent message_ids; an earlier copy replaces a later one (contracts §2).
        The stage is first cut to one row per message_id, the canonical copy (MERGE may
        not meet a target row twice)."""
        names, t = EVENTS.column_names, EVENTS.name
        first = sql.SQL(
            "SELECT DISTINCT ON (s.{k}) s.* FROM ({src}) AS s ORDER BY s.{k}, s.{r}, s.{ts}"
        ).format(
            k=ident("message_id"),
            r=ident("received_at"),
            ts=ident("timestamp"),
            src=self.typed_source("events"),
        )
        earlier = sql.SQL("s.{r} < {t}.{r} OR (s.{r} = {t}.{r} AND s.{ts} < {t}.{ts})").format(
            r=ident("received_at"), ts=ident("timestamp"), t=ident(t)
        )
        return [
            sql.SQL(
                "MERGE INTO {target} USING ({src}) AS s ON {t}.{k} = s.{k} "
                "WHEN MATCHED AND ({earlier}) THEN UPDATE SET {set} "
                "WHEN NOT MATCHED THEN INSERT ({c}) VALUES ({sc})"
            ).format(
                target=ident(schema, t), src=first, t=ident(t), k=ident("message_id"),
                earlier=earlier, c=cols(names), sc=cols(names, "s"),
                set=sql.SQL(", ").join(
                    sql.SQL("{c} = s.{c}").format(c=ident(n)) for n in names if n != "message_id"
                ),
            )
        ]  # fmt: skip

    def json_id(self, column: sql.Composable, key: str) -> sql.Composable:
        return sql.SQL(
            "CASE WHEN jsonb_typeof({c} -> {k}) IN ('string', 'number') THEN NULLIF({c} ->> {k}, '') END"
        ).format(c=column, k=sql.Literal(key))

    def session_setup(self, group: str) -> list[sql.Composed]:
        return []  # no WLM: the application name already tells sessions apart (pg_stat_activity)

    def drop_temps(self) -> list[sql.Composed]:
        return []  # ON COMMIT DROP

    def stage(self, cur: Cursor, shape: str, batches: Sequence[Staged]) -> dict[str, int]:
        def chunks() -> Iterator[bytes]:
            for batch in batches:
                # events need no batch key per row (an empty field is NULL): fewer bytes to COPY
                head = _DELIMITER if shape == "events" else batch.key.encode() + _DELIMITER
                yield head + (b"\n" + head).join(batch.lines) + b"\n" if batch.lines else b""

        reader = _ChunkReader(chunks())
        try:
            # a psycopg2 cursor (the Cursor port has no COPY FROM STDIN: only this dialect streams)
            cur.copy_expert(self.copy_stage(), reader, size=COPY_CHUNK)  # type: ignore[attr-defined]
        except psycopg2.Error:
            if reader.error is not None:  # e.g. CorruptBatch from a batch fetched meanwhile
                raise reader.error from None
            raise
        return {b.key: b.rows for b in batches}

    def acquire_day_lock(self, cur: Cursor, schema: str, day: date) -> bool:
        # session-level: held until unlocked or the session ends (a crashed run frees it)
        cur.execute(sql.SQL("SELECT pg_try_advisory_lock({}, {})").format(*_lock_literals(schema, day)))
        row = cur.fetchone()
        return bool(row and row[0])

    def release_day_lock(self, cur: Cursor, schema: str, day: date) -> None:
        cur.execute(sql.SQL("SELECT pg_advisory_unlock({}, {})").format(*_lock_literals(schema, day)))

    def is_retryable(self, exc: BaseException) -> bool:
        # lost connections, admin shutdowns, serialization failures, deadlocks
        return isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError)

    def is_data_error(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg2.DataError | psycopg2.IntegrityError)

    def data_error_reason(self, exc: BaseException) -> str:
        if isinstance(exc, errors.NotNullViolation):
            return "bad_shape"  # a required field is missing (or the line is no object)
        text = str(exc).lower()
        if "json" in text or isinstance(exc, errors.BadCopyFileFormat):
            return "bad_json"
        return "bad_value"  # a timestamp, date or count that does not parse
