"""What a run of offsets adds to the aggregate tables (pure): the rows of a cut's delta objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TABLES = ("engagement_daily", "experiment_daily", "experiment_assignments")


@dataclass
class Deltas:
    """What a run of offsets added: ``[event_count, user_count]`` per row and received day."""

    engagement: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)
    experiment: dict[tuple[str, str, str, str, str], list[int]] = field(default_factory=dict)
    assignments: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)

    def rows(self, table: str) -> list[dict[str, Any]]:
        """The JSON lines of docs/contracts.md section 3 for one table, sorted by row key so
        that a replay writes the same bytes whatever order its state was restored in."""
        if table == "engagement_daily":
            return [
                {"day": d, "event": e, "received_day": r, "event_count": n, "user_count": u}
                for (d, e, r), (n, u) in sorted(self.engagement.items())
            ]
        if table == "experiment_daily":
            return [
                {
                    "day": d,
                    "experiment_id": x,
                    "variant": v,
                    "event": e,
                    "received_day": r,
                    "event_count": n,
                    "user_count": u,
                }
                for (d, x, v, e, r), (n, u) in sorted(self.experiment.items())
            ]
        if table == "experiment_assignments":
            return [
                {"experiment_id": x, "user_key": k, "variant": v, "first_exposed_at": t}
                for (x, k), (v, t) in sorted(self.assignments.items())
            ]
        raise ValueError(f"unknown table {table!r}")
