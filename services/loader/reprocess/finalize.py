"""The day replacement (docs/contracts.md §6) plus the drift it reveals.

The replacement itself is the loader's ``eventpipe.loader.warehouse.replace_day`` (one
implementation for both dialects, taking the same table locks as every load): day D's
rows := corrected rows (``is_final``) + the kept deltas of D whose batch the job did not
list (``final_batches``: the aggregate batches cut with the raw objects it read or skipped
as quarantined); assignments upserted, earliest wins; ``day_status(D)`` final with
``cutoff_day = D+L`` and an untouched ``day_watermark(D)``. It is computed
from the corrections and the deltas only, never from the rows it replaces, so running it
twice, or again after a crash (which rolled back), leaves what one clean run leaves.

Drift is measured inside the same transaction: the locks are taken first, then the day's
streamed rows and late deltas are read, so no load can slip in between the measurement
and the replacement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from psycopg2 import sql

from eventpipe.loader.batches import batch_from_rows
from eventpipe.loader.dialects import Dialect
from eventpipe.loader.dialects.common import record_final_batches
from eventpipe.loader.reprocess.drift import drift
from eventpipe.loader.reprocess.rows import (
    ASSIGNMENTS,
    DAILY_TABLES,
    DIMENSIONS,
    Counts,
    RowKey,
    add_counts,
    daily_counts,
)
from eventpipe.loader.warehouse import replace_day as warehouse_replace_day

Drift = dict[str, dict[str, int]]


def _sums(cur: Any, query: sql.Composable, params: tuple[Any, ...], width: int) -> dict[RowKey, Counts]:
    cur.execute(query, params)
    return {tuple(map(str, r[:width])): (int(r[-2]), int(r[-1])) for r in cur.fetchall()}


def read_day(cur: Any, schema: str, table: str, day: date) -> dict[RowKey, Counts]:
    dims = DIMENSIONS[table]
    query = sql.SQL("SELECT {}, event_count, user_count FROM {} WHERE day = %s").format(
        sql.SQL(", ").join(map(sql.Identifier, dims)), sql.Identifier(schema, table)
    )
    return _sums(cur, query, (day,), len(dims))


def late_deltas(cur: Any, schema: str, table: str, day: date) -> dict[RowKey, Counts]:
    """Deltas of ``day`` whose batch is not in ``final_batches``: the events the final rows
    lack (the day's batches must be recorded first, in the same transaction)."""
    dims = sql.SQL(", ").join(sql.Identifier("s", d) for d in DIMENSIONS[table])
    query = sql.SQL(
        "SELECT {d}, sum(s.event_count), sum(s.user_count) FROM {t} AS s LEFT JOIN {fb} AS fb"
        " ON fb.day = s.day AND fb.batch_key = s.batch_key"
        " WHERE s.day = %s AND fb.batch_key IS NULL GROUP BY {d}"
    ).format(d=dims, t=sql.Identifier(schema, f"{table}_deltas"), fb=sql.Identifier(schema, "final_batches"))
    return _sums(cur, query, (day,), len(DIMENSIONS[table]))


def replace_day(
    conn: Any,
    dialect: Dialect,
    schema: str,
    day: date,
    lateness_days: int,
    corrections: Mapping[str, Sequence[dict[str, Any]]],
    keys: Mapping[str, str] | None = None,
    contained: Sequence[str] = (),
    objects: int = 0,
) -> Drift:
    """Make ``day`` final with ``corrections`` (table -> contracts §3 rows), in one
    transaction on ``conn``; returns the drift of each daily table's replaced rows.
    ``keys`` names the correction objects in S3 (Redshift stages them from there);
    ``contained`` the aggregate batches whose events the corrections contain, of the
    ``objects`` raw objects the job listed."""
    cutoff = day + timedelta(days=lateness_days)
    keys = keys or {}
    batches = {
        table: batch_from_rows(keys.get(table, f"corrections/{table}"), f"{table}:final", corrections[table])
        for table in DAILY_TABLES
        if corrections.get(table)
    }
    if corrections.get(ASSIGNMENTS):
        batches[ASSIGNMENTS] = batch_from_rows(
            keys.get(ASSIGNMENTS, ASSIGNMENTS), ASSIGNMENTS, corrections[ASSIGNMENTS]
        )
    report: Drift = {}
    try:
        with conn.cursor() as cur:  # opens the transaction warehouse_replace_day commits
            for table in (*DAILY_TABLES, ASSIGNMENTS):
                cur.execute(dialect.lock(schema, table))
            for statement in record_final_batches(schema, day, contained):
                cur.execute(statement)
            for table in DAILY_TABLES:
                final = add_counts(
                    daily_counts(table, corrections.get(table, ())), late_deltas(cur, schema, table, day)
                )
                report[table] = drift(read_day(cur, schema, table, day), final)
        warehouse_replace_day(conn, dialect, schema, day, cutoff, batches, None, objects)
    except BaseException:
        conn.rollback()
        raise
    return report
