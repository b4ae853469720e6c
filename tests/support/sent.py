"""What the warehouse must hold for a message a test SENT: its ``events`` row and the event
dict ``tests/reference.py`` takes, from the payload and the ``receivedAt`` the collector's
2xx answer reported. Segment's clock-skew correction is written out again here
(``timestamp = receivedAt - (sentAt - originalTimestamp)``), independently of
``eventpipe.events``, so an oracle built on it never reads what it judges.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

SOURCE = "dev"  # what EVENTPIPE_WRITE_KEYS maps the load's key to
CLIENT_IP = "127.0.0.1"  # the collector stamps context.ip with the peer address


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def iso_ms(moment: datetime) -> str:
    """``2026-12-01T14:05:09.123Z``: milliseconds truncated, as the contract writes them."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def skew_corrected(received: str, sent_at: str | None, original: str | None) -> str:
    if original is None:
        return received
    if sent_at is None:
        return iso_ms(parse(original))
    return iso_ms(parse(received) - (parse(sent_at) - parse(original)))


def expected_row(payload: dict[str, Any], received: str) -> dict[str, Any]:
    """The ``events`` row DESIGN.md's contract makes of one sent message."""
    kind = payload["type"]
    sent_at, original = payload.get("sentAt"), payload.get("timestamp")
    return {
        "type": kind,
        "event": payload.get("event") if kind == "track" else None,
        "name": payload.get("name") if kind in ("page", "screen") else None,
        "user_id": payload.get("userId"),
        "anonymous_id": payload.get("anonymousId"),
        "source": SOURCE,
        "timestamp": skew_corrected(received, sent_at, original),
        "received_at": received,
        "sent_at": iso_ms(parse(sent_at)) if sent_at else None,
        "original_timestamp": iso_ms(parse(original)) if original else None,
        "properties": payload.get("properties"),
        "traits": payload.get("traits"),
        "context": {**(payload.get("context") or {}), "ip": CLIENT_IP},
    }


def as_reference_event(mid: str, row: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """The event dict ``tests/reference.py`` takes."""
    return {
        "messageId": mid, "type": row["type"], "event": row["event"], "userId": row["user_id"],
        "anonymousId": row["anonymous_id"], "previousId": payload.get("previousId"),
        "timestamp": row["timestamp"], "receivedAt": row["received_at"],
        "properties": row["properties"], "traits": row["traits"],
    }  # fmt: skip
