"""From a decoded request body to Kafka records (pure: no I/O, the clock is passed in).

A single-event call with an invalid event raises ``InvalidInput`` (HTTP 400). A batch
keeps its valid events and reports the rest per index; if none is valid it raises too.

What a request publishes is bounded, not only what it sends: a batch-level ``context`` is
copied into every event, so a 457-byte gzipped batch could otherwise publish 76 MB. The
batch context has its own cap, and the published bytes (events and dead letters) may not
exceed the request limit plus a fixed allowance per event for the fields the server
stamps (``SERVER_FIELDS_BYTES``); past that the whole request is a 413 and nothing is sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from eventpipe.definitions import engagement_name
from eventpipe.errors import InvalidInput, PayloadTooLarge
from eventpipe.events import normalize, user_key
from eventpipe.ingest.fastnorm import fast_normalize
from eventpipe.ingest.trackingplan import TrackingPlan
from eventpipe.timeutil import format_ts, parse_ts


@dataclass
class Rejection:
    index: int
    reason: str
    detail: str
    message: Any  # the original message, kept for the dead-letter topic

    def public(self) -> dict[str, Any]:
        return {"index": self.index, "reason": self.reason, "detail": self.detail}


@dataclass
class Collected:
    records: list[tuple[bytes | None, bytes]] = field(default_factory=list)  # key, value
    types: list[str] = field(default_factory=list)
    names: list[str | None] = field(default_factory=list)  # engagement name, for metrics
    sizes: list[int] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    def add(self, key: bytes | None, value: bytes, event: dict[str, Any]) -> None:
        self.records.append((key, value))
        self.types.append(event["type"])
        self.names.append(engagement_name(event))
        self.sizes.append(len(value))


# What normalisation adds to an event at most, beyond what the client sent: messageId,
# receivedAt, timestamp, source, context.ip and the null fields (a unit test checks it).
SERVER_FIELDS_BYTES = 384


class StampText:
    """``format_ts`` of a request's ``receivedAt``, formatted once per millisecond: the requests
    of one millisecond share the text, which has millisecond precision (formatting was ~3% of
    a single-event request's main thread, issue 16). Holds the last millisecond seen."""

    _MS = timedelta(milliseconds=1)

    def __init__(self) -> None:
        self.start = self.end = datetime.min.replace(tzinfo=UTC)
        self.text = ""

    def __call__(self, moment: datetime) -> str:
        if moment.tzinfo is not UTC:  # naive or another zone: no comparison with the cache
            return format_ts(moment)
        if self.start <= moment < self.end:
            return self.text
        text = format_ts(moment)
        self.start = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
        self.end, self.text = self.start + self._MS, text
        return text


received_stamp = StampText()


@dataclass  # not frozen: a frozen dataclass's __init__ costs a setattr call per field, per request
class RequestInfo:
    received_at: datetime
    source: str
    client_ip: str | None
    max_event_bytes: int
    max_batch_events: int
    plan: TrackingPlan | None = None  # optional tracking plan (trackingplan.py)
    correct_skew: bool = True  # False for /v1/import: the client's timestamp is kept as sent
    max_request_bytes: int = 500 * 1024
    max_batch_context_bytes: int = 8 * 1024
    # every event and the answer carry it: set once, here (functools.cached_property takes a
    # lock on Python 3.11, ~1 µs a request)
    received_text: str = field(init=False, repr=False, compare=False, default="")

    def __post_init__(self) -> None:
        self.received_text = received_stamp(self.received_at)

    def publish_budget(self, events: int) -> int:
        """Bytes a request of ``events`` messages may publish, dead letters included."""
        return self.max_request_bytes + SERVER_FIELDS_BYTES * events


def encode_event(event: dict[str, Any], max_bytes: int) -> bytes:
    try:
        value = orjson.dumps(event)
    except (TypeError, orjson.JSONEncodeError) as exc:  # lone surrogates, mostly
        raise InvalidInput("invalid_json", "event contains invalid unicode") from exc
    if len(value) > max_bytes:
        raise PayloadTooLarge("event_too_large", f"event over {max_bytes} bytes")
    return value


def _one(
    message: Any, event_type: str | None, info: RequestInfo, batch: dict[str, Any]
) -> tuple[bytes | None, bytes, dict[str, Any]]:
    event = fast_normalize(
        message, event_type, info.received_at, info.source, info.client_ip, batch, info.correct_skew
    ) or normalize(
        message,
        event_type=event_type,
        received_at=info.received_at,
        source=info.source,
        client_ip=info.client_ip,
        batch_sent_at=batch.get("sentAt"),
        batch_context=batch.get("context"),
        received_text=batch.get("receivedText"),
        correct_skew=info.correct_skew,
    )
    if info.plan is not None:
        info.plan.apply(event)  # a violation of a rejecting source is an invalid event
    value = encode_event(event, info.max_event_bytes)  # first: it refuses lone surrogates anywhere
    key = user_key(event)
    return (key.encode() if key else None), value, event


def _batch_fields(body: dict[str, Any], info: RequestInfo) -> dict[str, Any]:
    fields: dict[str, Any] = {"receivedText": info.received_text}
    if body.get("sentAt") is not None:
        try:
            fields["sentAt"] = parse_ts(body["sentAt"])
            fields["sentText"] = format_ts(fields["sentAt"])
        except (ValueError, TypeError, OverflowError) as exc:  # Overflow: an offset at year 1 or 9999
            raise InvalidInput("invalid_timestamp", "batch sentAt is not an ISO 8601 timestamp") from exc
    context = body.get("context")
    if context is not None:
        if not isinstance(context, dict):
            raise InvalidInput("invalid_field", "batch context must be a JSON object")
        try:
            size = len(orjson.dumps(context))
        except (TypeError, orjson.JSONEncodeError) as exc:  # lone surrogates
            raise InvalidInput("invalid_json", "batch context contains invalid unicode") from exc
        if size > info.max_batch_context_bytes:  # it is copied into every event of the batch
            raise PayloadTooLarge(
                "context_too_large", f"batch context over {info.max_batch_context_bytes} bytes"
            )
        fields["context"] = context
    return fields


def collect(body: Any, event_type: str | None, info: RequestInfo) -> Collected:
    """``event_type`` is the route's type, or None for ``/v1/batch``."""
    if not isinstance(body, dict):
        raise InvalidInput("invalid_body", "body must be a JSON object")
    out = Collected()
    if event_type is not None:
        out.add(*_one(body, event_type, info, {"receivedText": info.received_text}))
        return out

    messages = body.get("batch")
    if not isinstance(messages, list) or not messages:
        raise InvalidInput("invalid_batch", "batch must be a non-empty array of events")
    if len(messages) > info.max_batch_events:
        raise PayloadTooLarge("too_many_events", f"batch over {info.max_batch_events} events")
    shared = _batch_fields(body, info)
    budget = info.publish_budget(len(messages))
    published = 0
    for index, message in enumerate(messages):
        try:
            out.add(*_one(message, None, info, shared))
            published += out.sizes[-1]
        except InvalidInput as exc:
            out.rejected.append(Rejection(index, exc.reason, exc.detail, message))
            published += len(dead_letter(out.rejected[-1], info))
        if published > budget:  # checked as it grows: memory stays bounded by the budget
            raise PayloadTooLarge(
                "published_too_large",
                f"batch expands to over {budget} bytes of events (batch context copied into each)",
            )
    if not out.records:
        first = out.rejected[0]
        raise InvalidInput(first.reason, f"no valid event in batch; first: #{first.index}: {first.detail}")
    return out


def dead_letter(rejection: Rejection, info: RequestInfo) -> bytes:
    """The dead-letter record: why, from where, and the message as sent (when encodable)."""
    record = {
        "reason": rejection.reason,
        "detail": rejection.detail,
        "source": info.source,
        "receivedAt": info.received_at.isoformat(),
        "index": rejection.index,
    }
    try:
        return orjson.dumps({**record, "message": rejection.message})
    except (TypeError, orjson.JSONEncodeError):
        return orjson.dumps({**record, "message": None, "unencodable": True})
