"""PostgreSQL (15+): rows stream from S3 through ``COPY FROM STDIN`` into a temporary
stage of JSON lines; typed columns are extracted in SQL; events merge with ``MERGE``.

The stage holds each line as ``jsonb`` (CSV with control-character quote/delimiter,
which valid JSON can never contain unescaped), so COPY never needs to understand the
line and one stage layout serves every table.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg2
from psycopg2 import sql

from eventpipe.loader.dialects.common import STAGE, cols, ident
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
    Table,
    line_columns,
)

_TYPES = {ID: "TEXT", TEXT: "TEXT", TS: "TIMESTAMPTZ", DATE: "DATE", BIGINT: "BIGINT", INT: "INTEGER",
          BOOL: "BOOLEAN", JSON: "JSONB"}  # fmt: skip
_DEFAULTS = {"false": "FALSE", "now": "now()"}
_CASTS = {TS: "timestamptz", DATE: "date", BIGINT: "bigint", INT: "integer", BOOL: "boolean"}
_DELIMITER, _QUOTE = b"\x02", b"\x01"
COPY_CHUNK = 1 << 20


class _ChunkReader:
    """A read()-able view of an iterator of byte chunks, for ``copy_expert``."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks, self._buffer = chunks, b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            size = len(self._buffer)
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out

    def readline(self, size: int = -1) -> bytes:  # pragma: no cover - copy_expert uses read()
        return self.read(size)


class PostgresDialect:
    name = "postgres"

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

    def lock(self, schema: str, table: str) -> sql.Composed:
        # self-conflicting, but readers (ACCESS SHARE) are never blocked by a load
        return sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(ident(schema, table))

    def temp_table(self, name: str, body: sql.Composable) -> list[sql.Composed]:
        return [
            sql.SQL("DROP TABLE IF EXISTS {}").format(ident(name)),
            sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP {}").format(ident(name), body),
        ]

    def create_stage(self, shape: str) -> list[sql.Composed]:
        return [
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
        The stage is already one line per message_id (``batches.dedup_events``)."""
        names, t = EVENTS.column_names, EVENTS.name
        earlier = sql.SQL("s.{r} < {t}.{r} OR (s.{r} = {t}.{r} AND s.{ts} < {t}.{ts})").format(
            r=ident("received_at"), ts=ident("timestamp"), t=ident(t)
        )
        return [
            sql.SQL(
                "MERGE INTO {target} USING ({src}) AS s ON {t}.{k} = s.{k} "
                "WHEN MATCHED AND ({earlier}) THEN UPDATE SET {set} "
                "WHEN NOT MATCHED THEN INSERT ({c}) VALUES ({sc})"
            ).format(
                target=ident(schema, t), src=self.typed_source("events"), t=ident(t), k=ident("message_id"),
                earlier=earlier, c=cols(names), sc=cols(names, "s"),
                set=sql.SQL(", ").join(
                    sql.SQL("{c} = s.{c}").format(c=ident(n)) for n in names if n != "message_id"
                ),
            )
        ]  # fmt: skip

    def drop_temps(self) -> list[sql.Composed]:
        return []  # ON COMMIT DROP

    def stage(self, cur: Any, shape: str, batches: list[Any], lines: list[bytes] | None) -> dict[str, int]:
        def chunks() -> Iterator[bytes]:
            if lines is not None:  # deduplicated events: no batch key per line
                for at in range(0, len(lines), 10_000):
                    yield b"".join(_DELIMITER + line + b"\n" for line in lines[at : at + 10_000])
                return
            for batch in batches:
                head = batch.key.encode() + _DELIMITER
                yield b"".join(head + line + b"\n" for line in batch.lines)

        cur.copy_expert(self.copy_stage(), _ChunkReader(chunks()), size=COPY_CHUNK)
        # the planner needs real row counts to probe the target by key, not scan it
        cur.execute(sql.SQL("ANALYZE {}").format(ident(STAGE)))
        return {b.key: b.rows for b in batches}

    def is_retryable(self, exc: BaseException) -> bool:
        # lost connections, admin shutdowns, serialization failures, deadlocks
        return isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError)

    def is_data_error(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg2.DataError | psycopg2.IntegrityError)
