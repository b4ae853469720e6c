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

from eventpipe.loader.batches import batch_from_rows
from eventpipe.loader.dialects import Cursor, Dialect, Statement
from eventpipe.loader.dialects.bookkeeping import day_rows, late_delta_sums
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


def _sums(cur: Cursor, table: str, query: Statement) -> dict[RowKey, Counts]:
    cur.execute(query)
    width = len(DIMENSIONS[table])
    return {tuple(map(str, r[:width])): (int(str(r[-2])), int(str(r[-1]))) for r in cur.fetchall()}


def read_day(cur: Cursor, schema: str, table: str, day: date) -> dict[RowKey, Counts]:
    return _sums(cur, table, day_rows(schema, table, DIMENSIONS[table], day))


def late_deltas(cur: Cursor, schema: str, table: str, day: date) -> dict[RowKey, Counts]:
    """Deltas of ``day`` whose batch is not in ``final_batches``: the events the final rows
    lack (the day's batches must be recorded first, in the same transaction)."""
    return _sums(cur, table, late_delta_sums(schema, table, DIMENSIONS[table], day))


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
    transaction on ``conn`` (``eventpipe.loader.warehouse.replace_day``); returns the drift
    of each daily table's replaced rows, measured inside it. ``keys`` names the correction
    objects in S3 (Redshift stages them from there); ``contained`` the aggregate batches
    whose events the corrections contain, of the ``objects`` raw objects the job listed."""
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

    def measure(cur: Cursor) -> Drift:
        report: Drift = {}
        for table in DAILY_TABLES:
            final = add_counts(
                daily_counts(table, corrections.get(table, ())), late_deltas(cur, schema, table, day)
            )
            report[table] = drift(read_day(cur, schema, table, day), final)
        return report

    report = warehouse_replace_day(conn, dialect, schema, day, cutoff, batches, contained, objects, measure)
    return report if report is not None else {}
