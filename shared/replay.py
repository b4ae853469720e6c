"""Replaying rejected events through the collector (``eventpipe rejected replay``).

Each rejected event is re-submitted to the collector's ``/v1/import`` with a write key of its
source, so it passes the same validation as any event. What makes a replay safe to repeat:

* a fixed copy keeps its ``messageId``; one that had none gets ``rj-<stage>-<partition>-<offset>``,
  so a replay twice stores once (the loader merges by messageId);
* it keeps its time: ``/v1/import`` does no clock-skew correction against the replay's
  receipt, so the replay places the event where the original receipt would have
  (``timestamp`` if the client sent no ``sentAt``, corrected against the original
  ``receivedAt`` if it did, the original ``receivedAt`` if it sent no timestamp);
* events that would still be invalid (checked first with the collector's own pure
  validation) are reported, not sent: a replay never makes new dead letters of them.

A fix script is a Python file defining ``fix(message: dict, rejected: dict) -> dict | None``:
it returns the corrected message, or None to leave the event out.
"""

from __future__ import annotations

import copy
import runpy
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from eventpipe.errors import EventpipeError, InvalidInput
from eventpipe.events import corrected_timestamp, normalize
from eventpipe.rejected import Rejected
from eventpipe.timeutil import format_ts, parse_ts, utcnow

Fix = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any] | None]
BATCH = 100


class ReplayError(EventpipeError):
    """A replay cannot start (bad fix script, no write key for a source) or the collector refused it."""


def load_fix(path: Path) -> Fix:
    try:
        namespace = runpy.run_path(str(path))
    except (OSError, SyntaxError) as exc:
        raise ReplayError(f"fix script {path}: {exc}") from exc
    fix = namespace.get("fix")
    if not callable(fix):
        raise ReplayError(f"fix script {path} must define fix(message, rejected) -> dict | None")
    return fix


def _placed_in_time(message: dict[str, Any], received: Any) -> dict[str, Any]:
    """The message with the ``timestamp`` the original receipt would have given it."""
    if received is None:
        return message
    try:
        original = parse_ts(message["timestamp"]) if message.get("timestamp") is not None else None
        sent = parse_ts(message["sentAt"]) if message.get("sentAt") is not None else None
        moment = corrected_timestamp(received, sent, original)
    except (TypeError, ValueError, OverflowError):
        return message  # an unreadable timestamp stays as it is: validation reports it
    return {**message, "timestamp": format_ts(moment)}


@dataclass
class Plan:
    """What a replay sends, per source, and what it leaves out (with why)."""

    send: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    invalid: list[tuple[str, str]] = field(default_factory=list)  # (id, why)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.send.values())


def plan(items: Iterable[Rejected], fix: Fix | None = None) -> Plan:
    """Prepare every message (pure): fix, keep or give a messageId, place in time, validate."""
    out = Plan()
    for item in items:
        if not isinstance(item.message, dict) or item.source is None:
            out.skipped["unreadable"] += 1
            continue
        message = copy.deepcopy(item.message)
        if fix is not None:
            fixed = fix(message, item.as_dict())
            if fixed is None:
                out.skipped["left out by the fix script"] += 1
                continue
            message = fixed
        message.setdefault("messageId", None)
        message["messageId"] = message["messageId"] or f"rj-{item.stage}-{item.partition}-{item.offset}"
        if item.stage == "ingest":  # a stream line is a published event: its timestamp is final
            message = _placed_in_time(message, item.received_at)
        try:
            normalize(message, event_type=None, received_at=utcnow(), source=item.source)
        except InvalidInput as exc:
            out.invalid.append((item.id, f"{exc.reason}: {exc.detail}"))
            continue
        out.send.setdefault(item.source, []).append(message)
    return out


def key_for_source(write_keys: dict[str, str], source: str) -> str:
    for key, name in write_keys.items():
        if name == source:
            return key
    raise ReplayError(f"no write key for source {source!r} in EVENTPIPE_WRITE_KEYS")


def send(
    collector: str,
    prepared: Plan,
    write_keys: dict[str, str],
    advance: Callable[[int], None] = lambda n: None,
) -> tuple[int, list[dict[str, Any]]]:
    """POST the plan to ``collector``/v1/import in batches; (accepted, the collector's rejections)."""
    accepted, refused = 0, []
    keys = {source: key_for_source(write_keys, source) for source in prepared.send}
    with httpx.Client(base_url=collector, timeout=60) as client:
        for source, messages in prepared.send.items():
            for start in range(0, len(messages), BATCH):
                chunk = messages[start : start + BATCH]
                try:
                    response = client.post("/v1/import", json={"batch": chunk}, auth=(keys[source], ""))
                except httpx.HTTPError as exc:
                    raise ReplayError(f"collector {collector} unreachable: {exc}") from exc
                if response.status_code != 200:
                    raise ReplayError(f"collector answered {response.status_code}: {response.text[:300]}")
                body = response.json()
                accepted += int(body.get("accepted", 0))
                refused += [
                    {**r, "messageId": chunk[r["index"]]["messageId"]} for r in body.get("rejected", [])
                ]
                advance(len(chunk))
    return accepted, refused
