"""The Redshift dialect's SQL run on PostgreSQL, so its numbers -- not only its syntax --
are checked against the reference (issue 17, "semantic harness").

``RedshiftOnPostgres`` IS the Redshift dialect (merges, day replacement, locks, temp
tables, stage layout: one column per lower-cased JSON key, ``earliest_wins`` dedup), with
only what has no shared syntax swapped, each for its PostgreSQL equivalent:

- COPY from S3 (manifest, IAM role) -> a local insert of the same objects' lines into the
  same stage columns, as ``FORMAT JSON 'auto ignorecase'`` maps them (keys matched
  without case, JSON values of ``SUPER`` columns kept as JSON, missing keys NULL);
- the ``SUPER`` type -> ``jsonb``; ``GETDATE()`` -> ``now()``; DISTKEY/SORTKEY -> nothing
  (storage hints);
- ``SUPER`` navigation (``json_id``) and ``CONVERT_TIMEZONE`` (``utc_date``) -> PostgreSQL's;
- ``SET query_group`` -> nothing (PostgreSQL has no such setting).
"""

from __future__ import annotations

from typing import Any

import orjson
from psycopg2 import sql
from psycopg2.extras import execute_values

from eventpipe.loader.dialects.common import STAGE, ident
from eventpipe.loader.dialects.postgres import PostgresDialect
from eventpipe.loader.dialects.redshift import RedshiftDialect, stage_column
from eventpipe.loader.tables import JSON, line_columns

_POSTGRES = PostgresDialect()


class RedshiftOnPostgres(RedshiftDialect):
    reads_s3_itself = False  # the loader hands the same objects over, downloaded

    def __init__(self) -> None:
        super().__init__(iam_role="arn:aws:iam::000000000000:role/harness")

    def type_of(self, kind: str) -> sql.Composable:
        return sql.SQL("JSONB") if kind == JSON else super().type_of(kind)

    def default_of(self, default: str) -> sql.Composable:
        return sql.SQL("now()") if default == "now" else super().default_of(default)

    def table_options(self, table: Any) -> sql.Composable:
        return sql.SQL("")

    def json_id(self, column: sql.Composable, key: str) -> sql.Composable:
        return _POSTGRES.json_id(column, key)

    def utc_date(self, timestamp: sql.Composable) -> sql.Composable:
        return _POSTGRES.utc_date(timestamp)

    def session_setup(self, group: str) -> list[sql.Composed]:
        return []

    def stage(self, cur: Any, shape: str, batches: list[Any]) -> dict[str, int]:
        columns = line_columns(shape)
        names = [ident("batch_key"), *(ident(stage_column(c.key)) for c in columns)]
        insert = sql.SQL("INSERT INTO {} ({}) VALUES %s").format(ident(STAGE), sql.SQL(", ").join(names))
        rows: dict[str, int] = {}
        for batch in batches:
            values = [
                _stage_row(batch.key, orjson.loads(line), columns) for line in batch.lines if line.strip()
            ]
            if values:
                execute_values(cur, insert.as_string(cur), values)
            rows[batch.key] = len(values)
        return rows


def _stage_row(key: str, record: dict[str, Any], columns: list[Any]) -> tuple[Any, ...]:
    """One line as COPY ... FORMAT JSON 'auto ignorecase' puts it into the stage."""
    by_lower = {k.lower(): v for k, v in record.items()}
    out: list[Any] = [key]
    for column in columns:
        value = by_lower.get(column.key.lower())
        if column.kind == JSON:
            out.append(None if value is None else orjson.dumps(value).decode())
        else:
            out.append(value)
    return tuple(out)
