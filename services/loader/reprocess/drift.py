"""Drift (pure): how far the streamed rows of a day were from the final ones."""

from __future__ import annotations

from collections.abc import Mapping

from eventpipe.loader.reprocess.rows import Counts, RowKey


def drift(previous: Mapping[RowKey, Counts], final: Mapping[RowKey, Counts]) -> dict[str, int]:
    """Rows whose (event_count, user_count) changed -- a row missing on one side counts as
    zeros there -- and the summed absolute differences of each count."""
    rows = abs_events = abs_users = 0
    for key in previous.keys() | final.keys():
        n0, u0 = previous.get(key, (0, 0))
        n1, u1 = final.get(key, (0, 0))
        if (n0, u0) != (n1, u1):
            rows += 1
            abs_events += abs(n1 - n0)
            abs_users += abs(u1 - u0)
    return {"rows_changed": rows, "abs_event_count": abs_events, "abs_user_count": abs_users}
