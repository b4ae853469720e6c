"""The one dispatcher of a load's merge (pure ``psycopg2.sql``): which statements move the
stage into ``table``, for the two ways loads run (``load.py``).

- ``keyed`` (PostgreSQL with its primary keys): loads run side by side, so the merges are
  upserts on the keys (``upserts``), exact between concurrent transactions;
- not keyed (Redshift, or a PostgreSQL whose keys were dropped): the load holds the
  ledger's lock, so dedup + DELETE/INSERT or ``MERGE`` (``common``), relying on no constraint.

Both keep the same deltas first: every delta line with its batch key, final days touched,
the per-row sums; only the last step (add to the target) differs.
"""

from __future__ import annotations

from datetime import datetime

from psycopg2 import sql

from eventpipe.loader.dialects import Dialect, upserts
from eventpipe.loader.dialects.common import (
    counts_source,
    deltas_insert,
    earliest_wins,
    merge_add,
    touch_final_days,
)
from eventpipe.loader.dialects.late_links import touch_linked_days
from eventpipe.loader.dialects.links import merge_identities
from eventpipe.loader.tables import DELTAS, EVENTS

ASSIGNMENT_ORDER = ("first_exposed_at", "variant")  # earliest wins; ties: lowest variant (rollup.assign)


def merge_statements(
    dialect: Dialect, schema: str, table: str, at: datetime, *, keyed: bool
) -> list[sql.Composable]:
    """The statements that merge the stage into ``table`` (and keep its deltas)."""
    if table == EVENTS.name:
        if keyed:
            events: list[sql.Composable] = [*upserts.upsert_events(dialect, schema)]
        else:
            events = [*dialect.merge_events(schema), *merge_identities(dialect, schema)]
        return [*events, touch_linked_days(dialect, schema, at)]
    if table in DELTAS:
        return [
            deltas_insert(dialect, schema, table, at),
            touch_final_days(dialect, schema, table, at),
            *counts_source(dialect, schema, table),
            upserts.upsert_add(schema, table) if keyed else merge_add(schema, table),
        ]
    if keyed:
        return [upserts.upsert_first(dialect, schema, table, ASSIGNMENT_ORDER)]
    return [*earliest_wins(dialect, schema, table, ASSIGNMENT_ORDER)]
