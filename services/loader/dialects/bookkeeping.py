"""Statements of the loader's own bookkeeping, shared by both dialects (pure ``psycopg2.sql``):
the S3 discovery watermark and table sizes (``eventpipe.loader.state``), the schema version
(``migrations``), and what the nightly job reads -- its snapshot and identity links
(``reprocess.inputs``), a day's stored rows and late deltas (``reprocess.finalize``), which
days are final or touched (``reprocess.schedule``). Values are ``sql.Literal``: each
statement is complete on its own."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from psycopg2 import sql

from eventpipe.loader.dialects import Dialect
from eventpipe.loader.dialects.common import cols, ident, literals, newest_staged
from eventpipe.loader.tables import (
    DAY_STATUS,
    DAY_WATERMARK,
    DELTAS,
    EXPERIMENT_ASSIGNMENTS,
    FINAL_BATCHES,
    IDENTITIES,
    LOAD_LEDGER,
    LOADER_STATE,
    SCHEMA_MIGRATIONS,
    Table,
)

WATERMARK = "s3_watermark_day"


def watermark_select(schema: str) -> sql.Composed:
    return sql.SQL("SELECT {} FROM {} WHERE {} = {}").format(
        ident("value"), ident(schema, LOADER_STATE.name), ident("name"), sql.Literal(WATERMARK)
    )


def watermark_replace(schema: str, day: date, at: datetime) -> list[sql.Composed]:
    """Delete + insert (no upsert on Redshift); run under ``dialect.lock`` of the state table."""
    t = ident(schema, LOADER_STATE.name)
    return [
        sql.SQL("DELETE FROM {} WHERE {} = {}").format(t, ident("name"), sql.Literal(WATERMARK)),
        sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            t, cols(("name", "value", "updated_at")), literals((WATERMARK, day.isoformat(), at))
        ),
    ]


def newest_staged_value(dialect: Dialect, table: str) -> sql.Composed:
    """The newest ``received_at`` of the staged rows (NULL but for events), read before the
    merge so the freshness row can be raised after COMMIT (``upserts.freshness_upsert``)."""
    return sql.SQL("SELECT {}").format(newest_staged(dialect, table))


def row_count(schema: str, table: Table) -> sql.Composed:
    return sql.SQL("SELECT COUNT(*) FROM {}").format(ident(schema, table.name))


def day_rows(schema: str, table: str, dimensions: Sequence[str], day: date) -> sql.Composed:
    """A daily table's stored rows of ``day``: dimensions, event_count, user_count."""
    return sql.SQL("SELECT {}, {} FROM {} WHERE {} = {}").format(
        cols(dimensions), cols(("event_count", "user_count")), ident(schema, table), ident("day"),
        sql.Literal(day),
    )  # fmt: skip


def late_delta_sums(schema: str, table: str, dimensions: Sequence[str], day: date) -> sql.Composed:
    """Deltas of ``day`` whose batch is not in ``final_batches``, summed per row: the events
    the final rows lack (the day's batches are recorded first, in the same transaction)."""
    dims = sql.SQL(", ").join(ident("s", d) for d in dimensions)
    return sql.SQL(
        "SELECT {d}, SUM(s.{ec}), SUM(s.{uc}) FROM {t} AS s LEFT JOIN {fb} AS fb"
        " ON fb.{day} = s.{day} AND fb.{bk} = s.{bk}"
        " WHERE s.{day} = {v} AND fb.{bk} IS NULL GROUP BY {d}"
    ).format(
        d=dims, ec=ident("event_count"), uc=ident("user_count"), t=ident(schema, f"{table}_deltas"),
        fb=ident(schema, FINAL_BATCHES.name), day=ident("day"), bk=ident("batch_key"), v=sql.Literal(day),
    )  # fmt: skip


def day_status_since(schema: str, first: date) -> sql.Composed:
    """``day, is_final, finalized_at`` of the days from ``first`` on."""
    return sql.SQL("SELECT {} FROM {} WHERE {} >= {}").format(
        cols(("day", "is_final", "finalized_at")), ident(schema, DAY_STATUS.name), ident("day"),
        sql.Literal(first),
    )  # fmt: skip


def touched_before(schema: str, since: datetime) -> sql.Composed:
    """``day, touched_received_day`` of the final days late data touched before ``since``."""
    touched = ident("touched_at")
    return sql.SQL("SELECT {} FROM {} WHERE {t} IS NOT NULL AND {t} < {v}").format(
        cols(("day", "touched_received_day")), ident(schema, DAY_WATERMARK.name), t=touched,
        v=sql.Literal(since),
    )  # fmt: skip


def create_schema(schema: str) -> sql.Composed:
    return sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(ident(schema))


def applied_migrations(schema: str) -> sql.Composed:
    return sql.SQL("SELECT {} FROM {}").format(ident("version"), ident(schema, SCHEMA_MIGRATIONS.name))


def record_migration(schema: str, version: int, name: str) -> sql.Composed:
    return sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        ident(schema, SCHEMA_MIGRATIONS.name), cols(("version", "name")), literals((version, name))
    )


def assignments_before(schema: str, before: datetime) -> sql.Composed:
    """The nightly job's snapshot: assignments decided before ``before`` (contracts §6)."""
    return sql.SQL("SELECT {} FROM {} WHERE {} < {}").format(
        cols(("experiment_id", "user_key", "variant", "first_exposed_at")),
        ident(schema, EXPERIMENT_ASSIGNMENTS.name), ident("first_exposed_at"), sql.Literal(before),
    )  # fmt: skip


def identity_links(schema: str) -> sql.Composed:
    """Every identity link (contracts §7)."""
    return sql.SQL("SELECT {} FROM {}").format(
        cols(("anonymous_id", "user_id", "linked_at", "message_id")), ident(schema, IDENTITIES.name)
    )


def prune(schema: str, loaded_before: datetime, day_before: date) -> list[tuple[str, sql.Composed]]:
    """``(table, DELETE)`` of the retention: ledger rows loaded before ``loaded_before``;
    deltas loaded then AND of a day before ``day_before`` (a late delta of an old day stays
    as long as a fresh one: the nightly re-adds it); final_batches of days before it."""
    loaded, day = ident("loaded_at"), ident("day")
    statements = [(LOAD_LEDGER.name, sql.SQL("{} < {}").format(loaded, sql.Literal(loaded_before)))]
    statements += [
        (deltas.name, sql.SQL("{} < {} AND {} < {}").format(loaded, sql.Literal(loaded_before), day,
                                                            sql.Literal(day_before)))
        for deltas in DELTAS.values()
    ]  # fmt: skip
    statements.append((FINAL_BATCHES.name, sql.SQL("{} < {}").format(day, sql.Literal(day_before))))
    return [
        (table, sql.SQL("DELETE FROM {} WHERE {}").format(ident(schema, table), where))
        for table, where in statements
    ]
