"""The Redshift dialect's SQL run on PostgreSQL, so its numbers -- not only its syntax --
are checked against the reference (issue 17, "semantic harness").

``RedshiftOnPostgres`` IS the Redshift dialect (merges, day replacement, locks, temp
tables, stage layout: one column per lower-cased JSON key, ``earliest_wins`` dedup), with
only what has no shared syntax swapped, each for its PostgreSQL equivalent:

- COPY from S3 (manifest, IAM role) -> a local insert of the same objects' lines into the
  same stage columns, as ``FORMAT JSON 'auto ignorecase'`` maps them (keys matched
  without case, JSON values of ``SUPER`` columns kept as JSON, missing keys NULL), grouped
  as the dialect groups its COPYs (``redshift_copy.copies``): a group's rows come without
  a batch key, as one COPY of several files leaves them;
- the ``SUPER`` type -> ``jsonb``; ``GETDATE()`` -> ``now()``; DISTKEY/SORTKEY -> nothing
  (storage hints);
- ``SUPER`` navigation (``json_id``) and ``CONVERT_TIMEZONE`` (``utc_date``) -> PostgreSQL's;
- ``SET query_group`` -> nothing (PostgreSQL has no such setting).
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import psycopg2
from psycopg2 import sql
from psycopg2.extras import execute_values

from eventpipe.loader.batches import parse_batch
from eventpipe.loader.dialects.common import STAGE, ident
from eventpipe.loader.dialects.postgres import PostgresDialect
from eventpipe.loader.dialects.redshift import RedshiftDialect, stage_column
from eventpipe.loader.dialects.redshift_copy import copies
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
        by_key = {b.key: b for b in batches}
        rows: dict[str, int] = {}
        for group in copies(shape, list(by_key)):
            tag = group[0] if len(group) == 1 else None  # one COPY of several files: no batch key
            for key in group:
                rows[key] = _insert_lines(cur, shape, tag, by_key[key].lines)
        return rows


def _insert_lines(cur: Any, shape: str, tag: str | None, lines: list[bytes]) -> int:
    """``lines`` into the stage as COPY puts them, ``batch_key`` = ``tag``; how many."""
    columns = line_columns(shape)
    names = [ident("batch_key"), *(ident(stage_column(c.key)) for c in columns)]
    insert = sql.SQL("INSERT INTO {} ({}) VALUES %s").format(ident(STAGE), sql.SQL(", ").join(names))
    values = [_stage_row(tag, orjson.loads(line), columns) for line in lines if line.strip()]
    if values:
        execute_values(cur, insert.as_string(cur), values)
    return len(values)


def _stage_row(key: str | None, record: dict[str, Any], columns: list[Any]) -> tuple[Any, ...]:
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


class ManifestCopyHarness(RedshiftOnPostgres):
    """The harness, with the Redshift dialect's own staging (``RedshiftDialect.stage``: its
    manifests written to the S3 API server, its statements) and only the cluster's side of
    the COPY done here (``CopyFromS3``)."""

    reads_s3_itself = True

    def __init__(self, s3: Any, bucket: str, manifest_prefix: str) -> None:
        super().__init__()
        self.s3, self.bucket, self.manifest_prefix = s3, bucket, manifest_prefix
        self.read_manifests: list[dict[str, Any]] = []  # what each COPY read, in order

    def stage(self, cur: Any, shape: str, batches: list[Any]) -> dict[str, int]:
        return RedshiftDialect.stage(self, CopyFromS3(cur, self, shape), shape, batches)


class CopyFromS3:
    """A PostgreSQL cursor that does the cluster's side of the Redshift COPY: reads the
    manifest named in the statement from S3, fails on a missing mandatory object (as COPY
    does), inserts the listed objects' lines into the stage without a batch key, and
    answers ``PG_LAST_COPY_COUNT()`` and the per-file ``STL_LOAD_COMMITS`` query."""

    _FROM = re.compile(r" FROM 's3://([^/']+)/([^']+)' IAM_ROLE ")

    def __init__(self, cur: Any, harness: ManifestCopyHarness, shape: str) -> None:
        self.cur, self.harness, self.shape = cur, harness, shape
        self.files: list[tuple[str, int]] = []
        self.answer: list[tuple[Any, ...]] | None = None  # None: the server's own answer

    def execute(self, statement: Any, vars: Any = None) -> None:
        text = statement if isinstance(statement, str) else statement.as_string(self.cur)
        if text.startswith("COPY "):
            self._copy(text)
            self.answer = []
        elif text == "SELECT PG_LAST_COPY_COUNT()":
            self.answer = [(sum(n for _, n in self.files),)]
        elif "stl_load_commits" in text:
            self.answer = list(self.files)
        else:
            self.cur.execute(statement, vars)
            self.answer = None

    def _copy(self, text: str) -> None:
        found = self._FROM.search(text)
        assert found, text
        s3 = self.harness.s3
        body = s3.get_object(Bucket=found.group(1), Key=found.group(2))["Body"].read()
        entries = orjson.loads(body)["entries"]
        self.harness.read_manifests.append({"key": found.group(2), "entries": entries})
        self.files = []
        for entry in entries:
            bucket, _, key = entry["url"].removeprefix("s3://").partition("/")
            try:
                data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            except s3.exceptions.NoSuchKey as exc:
                if entry["mandatory"]:
                    raise psycopg2.InternalError(f"Manifest file is not found: {entry['url']}") from exc
                continue
            lines = parse_batch(key, self.shape, data).lines
            self.files.append((entry["url"], _insert_lines(self.cur, self.shape, None, lines)))

    def fetchone(self) -> tuple[Any, ...] | None:
        if self.answer is None:
            return self.cur.fetchone()
        return self.answer[0] if self.answer else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self.cur.fetchall() if self.answer is None else self.answer
