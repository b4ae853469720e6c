"""The aggregate tables as lists of rows, and their comparison with the reference truth.

Lists, not dicts keyed by primary key: on Redshift nothing but the loader keeps a key
unique, and a second row for one key must show as one more row, not vanish in a dict.
"""

from __future__ import annotations

import time
from typing import Any

from psycopg2 import sql

from eventpipe.settings import Settings
from tests.reference import truth
from tests.support.faults.warehouse import query, table
from tests.support.sent import iso_ms

AggregateRows = dict[str, list[tuple]]


def aggregate_rows(settings: Settings) -> AggregateRows:
    """The aggregate tables as lists of rows (a duplicated row stays visible)."""
    eng = query(
        settings,
        sql.SQL("SELECT day, event, event_count, user_count FROM {}").format(
            table(settings, "engagement_daily")
        ),
    )
    exp = query(
        settings,
        sql.SQL("SELECT day, experiment_id, variant, event, event_count, user_count FROM {}").format(
            table(settings, "experiment_daily")
        ),
    )
    asg = query(
        settings,
        sql.SQL("SELECT experiment_id, user_key, variant, first_exposed_at FROM {}").format(
            table(settings, "experiment_assignments")
        ),
    )
    return {
        "engagement_daily": sorted((d.isoformat(), e, c, u) for d, e, c, u in eng if c or u),
        "experiment_daily": sorted((d.isoformat(), x, v, e, c, u) for d, x, v, e, c, u in exp if c or u),
        "experiment_assignments": sorted((x, k, v, iso_ms(t)) for x, k, v, t in asg),
    }


def truth_rows(events: list[dict[str, Any]], stitch: bool = True) -> AggregateRows:
    """``tests/reference.py``'s truth over ``events``, as rows like ``aggregate_rows``';
    ``stitch=False``: per raw id, as the stream counts (persons come with the nightly)."""
    want = truth(events, stitch=stitch)
    return {
        "engagement_daily": sorted(
            (d.isoformat(), e, c, u) for (d, e), (c, u) in want["engagement_daily"].items()
        ),
        "experiment_daily": sorted(
            (d.isoformat(), x, v, e, c, u) for (d, x, v, e), (c, u) in want["experiment_daily"].items()
        ),
        "experiment_assignments": sorted(
            (x, k, v, t) for (x, k), (v, t) in want["experiment_assignments"].items()
        ),
    }


KEY_WIDTH = {"engagement_daily": 2, "experiment_daily": 4, "experiment_assignments": 2}


def compare(expected: AggregateRows, actual: AggregateRows, limit: int = 30) -> list[str]:
    """Per table and primary key, the truth's rows against the warehouse's; a key with two
    warehouse rows shows both (a duplicate is a difference, never hidden by a dict)."""
    diffs: list[str] = []
    for name, want in expected.items():
        width = KEY_WIDTH[name]
        by_key: dict[tuple, tuple[list, list]] = {}
        for side, rows in ((0, want), (1, actual[name])):
            for row in rows:
                by_key.setdefault(row[:width], ([], []))[side].append(row[width:])
        for key, (truth_values, stored_values) in sorted(by_key.items(), key=str):
            if sorted(truth_values) != sorted(stored_values):
                diffs.append(f"{name}{key}: truth={truth_values} warehouse={stored_values}")
    return diffs[:limit] + ([f"... {len(diffs) - limit} more"] if len(diffs) > limit else [])


def settled_compare(settings: Settings, want: AggregateRows, timeout_s: float = 60.0) -> list[str]:
    """``compare`` once the streamed aggregates caught up (they trail ``events`` by a flush)."""
    deadline = time.monotonic() + timeout_s
    while True:
        diffs = compare(want, aggregate_rows(settings))
        if not diffs or time.monotonic() > deadline:
            return diffs
        time.sleep(2.0)
