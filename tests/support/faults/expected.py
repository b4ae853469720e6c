"""The truth from what the load generator SENT, not from what the pipeline stored.

An event the warehouse must hold is an ``ok`` id (a 2xx answered it) or an ``unknown`` id
that made it (its request's fate was never told). Its row follows from its payload, the
server's ``receivedAt`` that the 2xx answer reported, and Segment's clock-skew correction
written out again here (``timestamp = receivedAt - (sentAt - originalTimestamp)``),
independently of ``eventpipe.events``. The stored rows are read only to pick, for an id
sent more than once, which of its copies the pipeline kept -- and that copy must be one
an answer told, or lie inside the window of an attempt whose answer was lost.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from tests.support.faults.load import OK, UNKNOWN, Outcomes
from tests.support.sent import as_reference_event, expected_row, parse

WINDOW_SLACK_S = 1.0  # clock reads around a request vs the server's stamp inside it
COLUMNS = (
    "type", "event", "name", "user_id", "anonymous_id", "source", "timestamp", "received_at",
    "sent_at", "original_timestamp", "properties", "traits", "context",
)  # fmt: skip


@dataclass
class Expectation:
    events: list[dict[str, Any]] = field(default_factory=list)  # for tests/reference.truth
    differing: dict[str, list[str]] = field(default_factory=dict)  # id -> what differs

    def lines(self, limit: int = 10) -> list[str]:
        return [f"events[{mid}]: {'; '.join(d)}" for mid, d in sorted(self.differing.items())[:limit]]


def chosen_received(mid: str, outcomes: Outcomes, stored: str | None) -> tuple[str | None, str | None]:
    """(the receivedAt to expect, a problem or None)."""
    told = sorted(outcomes.received.get(mid, ()))
    if stored is None or stored in told:
        return (stored or (told[0] if told else None)), None
    moment = parse(stored).timestamp()
    windows = outcomes.unknown_windows.get(mid, [])
    if any(start - WINDOW_SLACK_S <= moment <= end + WINDOW_SLACK_S for start, end in windows):
        return stored, None
    return (told[0] if told else stored), f"received_at {stored} is no answer's {told} and in no lost attempt"


def expectation(outcomes: Outcomes, stored: dict[str, list[dict[str, Any]]]) -> Expectation:
    """``stored``: the ``events`` rows by message_id, values rendered like ``expected_row``'s."""
    ok, unknown = outcomes.ids(OK), outcomes.ids(UNKNOWN)
    out = Expectation()
    for mid in sorted(ok | (unknown & stored.keys())):
        payload = outcomes.messages[mid]
        rows = stored.get(mid, [])
        received, problem = chosen_received(mid, outcomes, rows[0]["received_at"] if rows else None)
        assert received is not None, f"{mid}: acknowledged without a receivedAt"
        want = expected_row(payload, received)
        out.events.append(as_reference_event(mid, want, payload))
        diffs = [problem] if problem else []
        for row in rows[:1]:  # missing and duplicated rows are counted apart (lost, duplicated)
            diffs += [f"{c}: sent {want[c]!r} stored {row[c]!r}" for c in COLUMNS if want[c] != row[c]]
        if diffs:
            out.differing[mid] = diffs
    return out


def group_rows(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_id[row["message_id"]].append(row)
    return by_id
