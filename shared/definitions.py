"""The single definition of what counts (DESIGN.md "Metrics semantics"), as pure functions.

The stream's incremental fold and the nightly rollups both classify events through these
functions, so a count means one thing in the codebase. Events are normalised dicts
(``eventpipe.events.normalize``); timestamps are the ISO strings every stage writes.
"""

from __future__ import annotations

from datetime import date
from typing import Any, NamedTuple, cast

from eventpipe.events import user_key

EXPOSURE_EVENT = "Experiment Viewed"
ANY_EVENT = "*"  # engagement_daily row whose user_count is DAU
ENGAGEMENT_TYPES = {"track", "page", "screen"}

__all__ = [
    "ANY_EVENT",
    "EXPOSURE_EVENT",
    "Exposure",
    "canonical_first",
    "engagement_name",
    "event_day",
    "exposure_of",
    "user_key",
]


class Exposure(NamedTuple):
    experiment_id: str
    variant: str


def engagement_name(event: dict[str, Any]) -> str | None:
    """The row name an engagement event counts under, or None (identify/group/alias)."""
    kind = event.get("type")
    if kind == "track":
        return cast("str | None", event.get("event"))  # validated: a track's event is a string
    if kind in ("page", "screen"):
        return cast(str, kind)
    return None


def _as_id(value: Any) -> str | None:
    if value is None or isinstance(value, bool | dict | list):
        return None
    text = str(value)
    return text or None


def exposure_of(event: dict[str, Any]) -> Exposure | None:
    """A track ``Experiment Viewed`` with an experiment and a variation (ids, else names)."""
    if event.get("type") != "track" or event.get("event") != EXPOSURE_EVENT:
        return None
    props = event.get("properties") or {}
    experiment = _as_id(props.get("experiment_id")) or _as_id(props.get("experiment_name"))
    variant = _as_id(props.get("variation_id")) or _as_id(props.get("variation_name"))
    if experiment is None or variant is None:
        return None
    return Exposure(experiment, variant)


def event_day(event: dict[str, Any]) -> date:
    """The UTC date of the corrected timestamp (``2026-11-26T...Z`` -> 2026-11-26)."""
    return date.fromisoformat(event["timestamp"][:10])


def canonical_first(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Of two copies of one messageId, the one that counts: the earliest received
    (ties broken by corrected timestamp, then by the whole line) -- an order every stage
    can reproduce, so the stream, the loader and the nightly job keep the same copy."""

    def rank(e: dict[str, Any]) -> tuple[str, str]:
        return (e["receivedAt"], e["timestamp"])

    if rank(a) != rank(b):
        return a if rank(a) < rank(b) else b
    return a if repr(sorted(a.items(), key=str)) <= repr(sorted(b.items(), key=str)) else b
