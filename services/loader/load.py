"""One load transaction (contracts §5): lock, check the ledger, stage, merge, record.

Whatever happens before COMMIT (a crash, a dropped connection, a kill -9), the
warehouse keeps nothing of the load; after it, everything, ledger row included. So a
replay is a no-op, and two loaders serialise on the lock and load each batch once --
with or without primary keys, since the merges never rely on a constraint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eventpipe.loader.batches import Batch
from eventpipe.loader.dialects import Dialect
from eventpipe.loader.dialects.common import (
    counts_source,
    deltas_insert,
    earliest_wins,
    freshness_of,
    freshness_update,
    keys_in,
    ledger_insert,
    merge_add,
    newest_staged,
    touch_final_days,
)
from eventpipe.loader.dialects.late_links import touch_linked_days
from eventpipe.loader.dialects.links import merge_identities
from eventpipe.loader.tables import DELTAS, LOAD_LEDGER
from eventpipe.timeutil import utcnow

ASSIGNMENT_ORDER = ("first_exposed_at", "variant")  # earliest wins; ties: lowest variant (rollup.assign)


@dataclass
class LoadResult:
    table: str
    loaded: dict[str, int] = field(default_factory=dict)  # key -> rows
    skipped: list[str] = field(default_factory=list)  # already in the ledger
    newest_received_at: datetime | None = None  # the table's watermark after this load


def merge_statements(dialect: Dialect, schema: str, table: str, at: datetime) -> list[Any]:
    """The statements that merge the stage into ``table`` (and keep deltas)."""
    if table == "events":
        return [
            *dialect.merge_events(schema),
            *merge_identities(dialect, schema),
            touch_linked_days(dialect, schema, at),
        ]
    if table in DELTAS:
        return [
            deltas_insert(dialect, schema, table, at),
            touch_final_days(dialect, schema, table, at),
            *counts_source(dialect, schema, table),
            merge_add(schema, table),
        ]
    return earliest_wins(dialect, schema, table, ASSIGNMENT_ORDER)


def load_group(
    conn: Any,
    dialect: Dialect,
    schema: str,
    table: str,
    batches: list[Batch],
    *,
    before_commit: Callable[[], None] | None = None,
) -> LoadResult:
    """Load ``batches`` (all for ``table``) in one transaction; keys already in the
    ledger are skipped. ``before_commit`` is a seam for fault-injection tests."""
    result = LoadResult(table)
    at = utcnow()
    with conn, conn.cursor() as cur:
        cur.execute(dialect.lock(schema, table))
        cur.execute(keys_in(schema, LOAD_LEDGER, [b.key for b in batches]))
        done = {row[0] for row in cur.fetchall()}
        todo = [b for b in batches if b.key not in done]
        result.skipped = [b.key for b in batches if b.key in done]
        if not todo:
            return result
        for statement in dialect.create_stage(table):
            cur.execute(statement)
        rows = dialect.stage(cur, table, todo)
        for statement in merge_statements(dialect, schema, table, at):
            cur.execute(statement)
        cur.execute(ledger_insert(schema, [(b.key, table, rows[b.key]) for b in todo], at))
        for statement in freshness_update(schema, table, newest_staged(dialect, table), at):
            cur.execute(statement)
        cur.execute(freshness_of(schema, table))
        found = cur.fetchone()
        result.newest_received_at = found[0] if found else None
        for statement in dialect.drop_temps():
            cur.execute(statement)
        if before_commit is not None:
            before_commit()
        result.loaded = {b.key: rows[b.key] for b in todo}
    return result
