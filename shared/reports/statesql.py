"""The queries of the pipeline's state that reports read (pure ``psycopg2.sql``, both
dialects; linted for Redshift with the report queries): whether a table exists, and the load
facts ``eventpipe status`` judges freshness by (``warehouse.load_facts``)."""

from __future__ import annotations

from psycopg2 import sql

from eventpipe.reports.sqlbuild import REDSHIFT, DialectArg, dialect_name, table

# parameters of ``has_table``
SCHEMA, NAME = sql.Placeholder("s"), sql.Placeholder("n")


def has_table(dialect: DialectArg) -> sql.Composable:
    """One row, one value: a count (Redshift: it has neither ``to_regclass`` nor ``format``,
    catalog and string functions AWS lists) or the table's regclass, NULL when absent."""
    if dialect_name(dialect) == REDSHIFT:
        return sql.SQL(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = {} AND table_name = {}"
        ).format(SCHEMA, NAME)
    return sql.SQL("SELECT to_regclass(format('%%I.%%I', {}::text, {}::text))").format(SCHEMA, NAME)


def newest_received_watermark(schema: str) -> sql.Composed:
    """The loader's freshness watermark of ``events``: no scan of the table."""
    return sql.SQL("SELECT max(newest_received_at) FROM {} WHERE table_name = 'events'").format(
        table(schema, "freshness")
    )


def newest_received(schema: str) -> sql.Composed:
    """Without a watermark: the newest ``received_at`` of ``events`` itself."""
    return sql.SQL("SELECT max(received_at) FROM {}").format(table(schema, "events"))


def ledger_summary(schema: str) -> sql.Composed:
    """The newest load and how many objects the ledger holds."""
    return sql.SQL("SELECT max(loaded_at), count(*) FROM {}").format(table(schema, "load_ledger"))


def final_days(schema: str) -> sql.Composed:
    return sql.SQL("SELECT day FROM {} WHERE is_final").format(table(schema, "day_status"))
