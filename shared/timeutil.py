"""UTC timestamps as eventpipe writes them: ISO 8601, millisecond precision, ``Z``."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_ts(value: str) -> datetime:
    """Parse an ISO 8601 timestamp; naive values are taken as UTC. Raises ValueError."""
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        raise ValueError("not an ISO 8601 timestamp string")
    text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_ts(moment: datetime) -> str:
    """``2026-11-26T17:32:30.123Z``: sortable as text, what every stage writes."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="milliseconds")[:23] + "Z"  # 2x faster than strftime: hot path


def utcnow() -> datetime:
    return datetime.now(UTC)
