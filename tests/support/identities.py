"""Generated histories of people with several ids (hypothesis), for stitching tests.

Each person browses anonymously on one or two devices, may sign up (identify with both
ids), may log in on a second device, may be renamed (alias of the old userId), converts in
server-side events that carry only the userId -- sometimes before any exposure -- and two
people may share a device (the second identify of one anonymousId must not merge them).
Events arrive shuffled, retried, and links often arrive after the events they re-attribute.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from eventpipe.timeutil import format_ts

START = datetime(2026, 11, 25, tzinfo=UTC)
EXPERIMENT = "exp-s"
VARIANTS = ("control", "green")
GOAL = "Order Completed"


@st.composite
def stitched_histories(
    draw: Callable[..., Any], start: datetime = START, people: int = 5, span_minutes: int = 3 * 1440
) -> list[dict[str, Any]]:
    """Normalised events of ``people`` people around ``start`` (within ``span_minutes``), in a
    shuffled arrival order, with retried copies (same messageId, received later)."""
    events: list[dict[str, Any]] = []

    def emit(kind: str, user: str | None, anon: str | None, **fields: Any) -> dict[str, Any]:
        at = start + timedelta(
            minutes=draw(st.integers(0, span_minutes)), milliseconds=draw(st.integers(0, 9))
        )
        lag = timedelta(minutes=draw(st.integers(0, 1440)))  # links (and others) often arrive late
        event = {
            "type": kind, "messageId": f"m{len(events)}", "userId": user, "anonymousId": anon,
            "timestamp": format_ts(at), "receivedAt": format_ts(at + lag), "source": "dev",
            "properties": {}, **fields,
        }  # fmt: skip
        events.append(event)
        if draw(st.integers(0, 5)) == 0:  # an SDK retry
            events.append({**event, "receivedAt": format_ts(at + lag + timedelta(minutes=3))})
        return event

    for p in range(draw(st.integers(1, people))):
        devices = [f"a{p}-{d}" for d in range(draw(st.integers(1, 2)))]
        user = f"u{p}"
        if draw(st.integers(0, 4)) == 0:  # a device shared with the previous person
            devices.append(f"a{p - 1}-0")
        for _ in range(draw(st.integers(0, 8))):
            device = draw(st.sampled_from(devices))
            who = draw(st.sampled_from(["anon", "anon", "both", "user"]))
            uid, aid = (None, device) if who == "anon" else (user, device) if who == "both" else (user, None)
            action = draw(st.sampled_from(["expose", "goal", "page", "identify", "identify", "other"]))
            if action == "expose":
                variant = draw(st.sampled_from(VARIANTS))
                props = {"experiment_id": EXPERIMENT, "variation_id": variant}
                emit("track", uid, aid, event="Experiment Viewed", properties=props)
            elif action == "goal":
                emit("track", uid, aid, event=GOAL)
            elif action == "page":
                emit("page", uid, aid, name="Home")
            elif action == "identify":
                emit("identify", user, device)
            else:
                emit("track", uid, aid, event="Product Viewed")
        if draw(st.integers(0, 5)) == 0:  # renamed: alias of the old userId
            emit("alias", f"{user}-new", None, previousId=user)
        if draw(st.integers(0, 6)) == 0:  # alias of a device straight to the account
            emit("alias", user, None, previousId=draw(st.sampled_from(devices)))
    return draw(st.permutations(events))
