"""The event model: validate and normalise one Segment-style message (pure, no I/O).

A normalised event is a plain dict, serialised as one JSON object: the Kafka value, a
line of ``raw/`` and a row of ``events``. Server-side fields: ``messageId`` (when absent),
``receivedAt``, ``source``, ``context.ip``, and the clock-skew corrected ``timestamp``
(``timestamp = receivedAt - (sentAt - originalTimestamp)``, as Segment documents it).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from eventpipe.errors import InvalidInput
from eventpipe.timeutil import canonical_text, format_ts, parse_ts

EVENT_TYPES = ("track", "identify", "page", "screen", "group", "alias")
MAX_ID_CHARS = 256
OBJECT_FIELDS = ("properties", "traits", "context", "integrations")
TIME_FIELDS = ("timestamp", "sentAt", "originalTimestamp")
# Fields SDKs send that we keep verbatim; anything else is dropped, not stored.
PASSTHROUGH = ("channel", "category", "version")


def _fail(reason: str, detail: str) -> InvalidInput:
    return InvalidInput(reason, detail)


def _optional_id(message: dict[str, Any], field: str) -> str | None:
    value = message.get(field)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _fail("invalid_field", f"{field} must be a string")
    text = str(value)
    if len(text) > MAX_ID_CHARS:
        raise _fail("invalid_field", f"{field} longer than {MAX_ID_CHARS} characters")
    return text


def _optional_time(message: dict[str, Any], field: str) -> datetime | None:
    value = message.get(field)
    if value is None:
        return None
    try:
        return parse_ts(value)
    except (ValueError, TypeError, OverflowError) as exc:  # Overflow: an offset at year 1 or 9999
        raise _fail("invalid_timestamp", f"{field} is not an ISO 8601 timestamp") from exc


def user_key(event: dict[str, Any]) -> str | None:
    """The Kafka key and the distinct-user identity: ``userId`` if present, else ``anonymousId``."""
    return event.get("userId") or event.get("anonymousId")


def corrected_timestamp(
    received_at: datetime, sent_at: datetime | None, original: datetime | None
) -> datetime:
    """Segment's clock-skew correction; without a client timestamp the event happened on receipt."""
    if original is None:
        return received_at
    if sent_at is None:
        return original
    return received_at - (sent_at - original)


def _corrected_text(received_at: datetime, sent_at: datetime, original: datetime) -> str:
    try:
        return format_ts(corrected_timestamp(received_at, sent_at, original))
    except OverflowError as exc:  # e.g. sentAt in year 206, timestamp in 8282: outside any calendar we store
        raise _fail("invalid_timestamp", "timestamp correction falls outside years 1-9999") from exc


def normalize(
    message: Any,
    *,
    event_type: str | None,
    received_at: datetime,
    source: str,
    client_ip: str | None = None,
    batch_sent_at: datetime | None = None,
    batch_context: dict[str, Any] | None = None,
    received_text: str | None = None,
    correct_skew: bool = True,
) -> dict[str, Any]:
    """Validate one message and return the normalised event, or raise ``InvalidInput``.

    ``event_type`` is the route's type (``/v1/track``); ``None`` inside a batch, where each
    message names its own ``type``. A message's ``sentAt`` wins over the batch's.
    ``correct_skew=False`` (historical imports) keeps the client's ``timestamp`` as sent.
    """
    if not isinstance(message, dict):
        raise _fail("invalid_event", "each event must be a JSON object")
    kind = message.get("type", event_type) if event_type is None else event_type
    if kind not in EVENT_TYPES:
        raise _fail("invalid_type", f"type must be one of {', '.join(EVENT_TYPES)}")

    user_id = _optional_id(message, "userId")
    anonymous_id = _optional_id(message, "anonymousId")
    if kind != "alias" and user_id is None and anonymous_id is None:
        raise _fail("missing_user", "userId or anonymousId is required")

    event: dict[str, Any] = {"type": kind, "userId": user_id, "anonymousId": anonymous_id}
    if kind == "track":
        name = message.get("event")
        if not isinstance(name, str) or not name.strip():
            raise _fail("missing_event", "track calls need a non-empty 'event' name")
        if len(name) > MAX_ID_CHARS:
            raise _fail("invalid_field", f"event name longer than {MAX_ID_CHARS} characters")
        event["event"] = name
    elif kind in ("page", "screen"):
        name = message.get("name")
        if name is not None and not isinstance(name, str):
            raise _fail("invalid_field", "name must be a string")
        event["name"] = name
    elif kind == "group":
        event["groupId"] = _optional_id(message, "groupId")
        if event["groupId"] is None:
            raise _fail("missing_field", "group calls need a groupId")
    elif kind == "alias":
        event["previousId"] = _optional_id(message, "previousId")
        if user_id is None or event["previousId"] is None:
            raise _fail("missing_field", "alias calls need userId and previousId")

    for field in OBJECT_FIELDS:
        value = message.get(field)
        if value is not None and not isinstance(value, dict):
            raise _fail("invalid_field", f"{field} must be a JSON object")
        event[field] = value
    for field in PASSTHROUGH:
        if isinstance(message.get(field), str):
            event[field] = message[field]

    context = dict(batch_context or {})
    context.update(event["context"] or {})
    if client_ip and "ip" not in context:
        context["ip"] = client_ip
    event["context"] = context
    if kind == "identify" and event["traits"] is None and isinstance(context.get("traits"), dict):
        # RudderStack's SDKs send an identify's traits in context.traits only (Segment's at
        # the top level): the `traits` column holds them either way
        event["traits"] = context["traits"]

    message_id = _optional_id(message, "messageId") or f"ep-{uuid.uuid4()}"
    original = _optional_time(message, "timestamp")
    sent_at = _optional_time(message, "sentAt") or batch_sent_at
    received = received_text or format_ts(received_at)
    skew_from = sent_at if correct_skew else None
    if original is None:
        original_text, corrected = None, received
    else:
        original_text = canonical_text(message["timestamp"], original)
        # nothing to correct: the client's own time, formatted once
        corrected = original_text if skew_from is None else _corrected_text(received_at, skew_from, original)
    event["messageId"] = message_id
    event["originalTimestamp"] = original_text
    event["sentAt"] = format_ts(sent_at) if sent_at else None
    event["receivedAt"] = received
    event["timestamp"] = corrected
    event["source"] = source
    return event
