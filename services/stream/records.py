"""What makes a Kafka value a usable event (pure): the one validation both fold paths share.

``parse_event`` is the row path's check, record by record; ``columns.decode_run`` takes a
fetched run on the columnar path only when every record passes these same checks.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

REQUIRED_TEXT = ("messageId", "receivedAt", "timestamp", "type")
# What the fold and the key naming read of a timestamp (a date, an hour): checked by a
# pattern rather than parsed, which would cost more than the rest of the validation.
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]00:?00)?$")


class BadRecord(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def parse_event(value: bytes | None) -> dict[str, Any]:
    """The event in a Kafka value, or ``BadRecord`` saying why it is unusable."""
    if value is None:
        raise BadRecord("empty", "record without a value")
    try:
        event = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise BadRecord("invalid_json", str(exc)[:200]) from exc
    if not isinstance(event, dict):
        raise BadRecord("invalid_event", "value is not a JSON object")
    for name in REQUIRED_TEXT:
        if not isinstance(event.get(name), str) or not event[name]:
            raise BadRecord("missing_field", f"{name} must be a non-empty string")
    for name in ("receivedAt", "timestamp"):
        if TIMESTAMP.match(event[name]) is None:
            raise BadRecord("invalid_timestamp", f"{name} is not a UTC ISO 8601 timestamp")
    return event
