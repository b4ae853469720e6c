"""One load transaction (contracts §5): claim the objects, stage, merge, record.

Whatever happens before COMMIT (a crash, a dropped connection, a kill -9), the
warehouse keeps nothing of the load; after it, everything, ledger row included. So a
replay is a no-op. Who loads an object:

- a warehouse that enforces the primary keys (PostgreSQL): the ledger's insert-if-absent,
  in the load's own transaction (``dialects.upserts``): loaders run side by side, the
  merges are upserts on the keys;
- one that does not (Redshift, or a PostgreSQL whose keys were dropped): every load takes
  the dialect's ``lock`` (Redshift: the ledger table), checks the ledger, and loaders take
  turns; the merges never rely on a constraint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg2 import sql

from eventpipe.loader.batches import Batch
from eventpipe.loader.dialects import Dialect, upserts
from eventpipe.loader.dialects.bookkeeping import newest_staged_value
from eventpipe.loader.dialects.common import (
    freshness_of,
    freshness_update,
    keys_in,
    ledger_insert,
    newest_staged,
)
from eventpipe.loader.dialects.merges import merge_statements
from eventpipe.loader.tables import LOAD_LEDGER
from eventpipe.timeutil import utcnow


@dataclass
class LoadResult:
    table: str
    loaded: dict[str, int] = field(default_factory=dict)  # key -> rows
    skipped: list[str] = field(default_factory=list)  # already in the ledger
    busy: list[str] = field(default_factory=list)  # in flight in another load: still pending
    newest_received_at: datetime | None = None  # the table's watermark after this load


def _claim(
    cur: Any, dialect: Dialect, schema: str, table: str, keys: list[str], at: datetime
) -> tuple[bool, set[str], set[str]]:
    """(keyed, the keys this load owns, the keys in flight in another load)."""
    keyed = dialect.keyed(cur, schema, upserts.keyed_tables(table))
    if not keyed:
        cur.execute(dialect.lock(schema, table))
        cur.execute(keys_in(schema, LOAD_LEDGER, keys))
        done = {row[0] for row in cur.fetchall()}
        return False, {k for k in keys if k not in done}, set()
    cur.execute(upserts.shared_write_lock(schema, table))
    cur.execute(upserts.free_objects(schema, keys))
    free = {row[0] for row in cur.fetchall()}
    if not free:
        return True, set(), set(keys)
    cur.execute(upserts.ledger_claim(schema, table, sorted(free), at))
    return True, {row[0] for row in cur.fetchall()}, set(keys) - free


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
    ledger are skipped, keys another load has in flight left pending (``busy``).
    ``before_commit`` is a seam for fault-injection tests."""
    result = LoadResult(table)
    at = utcnow()
    with conn, conn.cursor() as cur:
        keyed, owned, busy = _claim(cur, dialect, schema, table, [b.key for b in batches], at)
        todo = [b for b in batches if b.key in owned]
        result.busy = [b.key for b in batches if b.key in busy]
        result.skipped = [b.key for b in batches if b.key not in owned and b.key not in busy]
        if not todo:
            return result
        for statement in dialect.create_stage(table):
            cur.execute(statement)
        rows = dialect.stage(cur, table, todo)
        newest: sql.Composable = newest_staged(dialect, table)
        statements = merge_statements(dialect, schema, table, at, keyed=keyed)
        if keyed:  # the freshness row is every load's: raised after COMMIT, or loads would queue on it
            cur.execute(newest_staged_value(dialect, table))
            found = cur.fetchone()
            newest = sql.Literal(found[0] if found else None)
            statements += [upserts.ledger_rows(schema, [(b.key, rows[b.key]) for b in todo])]
        else:
            statements += [
                ledger_insert(schema, [(b.key, table, rows[b.key]) for b in todo], at),
                *freshness_update(schema, table, newest, at),
            ]
        for statement in statements:
            cur.execute(statement)
        for statement in dialect.drop_temps():
            cur.execute(statement)
        if before_commit is not None:
            before_commit()
        result.loaded = {b.key: rows[b.key] for b in todo}
    with conn, conn.cursor() as cur:  # a crash right before: the watermark lags until the next load
        if keyed:
            cur.execute(upserts.freshness_upsert(schema, table, newest, at))
        cur.execute(freshness_of(schema, table))
        found = cur.fetchone()
        result.newest_received_at = found[0] if found else None
    return result
