"""Synthetic product traffic (pure, seeded): a funnel, several experiments, anonymous
users who later identify, page and screen views, duplicates and skewed client clocks.

Used by ``make demo``, the benchmarks and the tests. ``messages()`` yields Segment
messages as an SDK would send them (client timestamps, sentAt).
"""

from __future__ import annotations

import random
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from eventpipe.timeutil import format_ts

FUNNEL = ("Product Viewed", "Product Added", "Checkout Started", "Order Completed")
EXPERIMENTS = {
    "checkout-button": ("control", "green"),
    "pricing-page": ("control", "annual-first", "monthly-first"),
    "onboarding-v2": ("control", "treatment"),
}
# conversion multiplier per variant: the demo's experiments have real effects
EFFECT = {"green": 1.25, "annual-first": 0.9, "treatment": 1.1}


@dataclass
class TrafficShape:
    users: int = 200
    sessions_per_user: int = 2
    duplicate_rate: float = 0.02
    max_skew_s: float = 300.0  # client clocks up to 5 minutes off
    identify_rate: float = 0.6


def _message_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


class _Session:
    """One visit: client-clock timestamps, one sentAt for the whole flush."""

    def __init__(self, rng: random.Random, anonymous_id: str, clock: datetime, skew: timedelta) -> None:
        self.rng, self.anonymous_id, self.clock, self.skew = rng, anonymous_id, clock, skew
        self.batch: list[dict[str, Any]] = []

    def emit(self, kind: str, ident: str | None, **fields: Any) -> None:
        self.clock += timedelta(seconds=self.rng.uniform(1, 20))
        msg = {
            "type": kind,
            "messageId": _message_id(self.rng),
            "anonymousId": self.anonymous_id,
            "timestamp": format_ts(self.clock + self.skew),
            **fields,
        }
        if ident:
            msg["userId"] = ident
        self.batch.append(msg)

    def flush(self) -> list[dict[str, Any]]:
        sent = self.clock + self.skew + timedelta(seconds=self.rng.uniform(0.1, 2))
        for msg in self.batch:
            msg["sentAt"] = format_ts(sent)
        return self.batch


def messages(
    seed: int = 7, shape: TrafficShape | None = None, now: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """Segment messages in sending order. Each has a unique messageId except the
    deliberate duplicates (an SDK retry sends the same message again)."""
    shape = shape or TrafficShape()
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    for n in range(shape.users):
        anonymous_id = f"anon-{seed}-{n}"
        user_id = f"user-{seed}-{n}" if rng.random() < shape.identify_rate else None
        skew = timedelta(seconds=rng.uniform(-shape.max_skew_s, shape.max_skew_s))
        clock = now - timedelta(minutes=rng.uniform(5, 30))
        identified = False
        for _ in range(shape.sessions_per_user):
            session = _Session(rng, anonymous_id, clock, skew)
            ident = user_id if identified else None
            session.emit("page", ident, name="Home", properties={"path": "/"})
            boost = 1.0
            for experiment, variants in EXPERIMENTS.items():
                if rng.random() < 0.7:
                    variant = variants[zlib.crc32(f"{experiment}:{anonymous_id}".encode()) % len(variants)]
                    boost *= EFFECT.get(variant, 1.0)
                    session.emit(
                        "track",
                        ident,
                        event="Experiment Viewed",
                        properties={"experiment_id": experiment, "variation_id": variant},
                    )
            if rng.random() < 0.3:
                session.emit("screen", ident, name="Catalog")
            p = 0.8
            for step in FUNNEL:
                if rng.random() > min(p * boost, 0.98):
                    break
                session.emit("track", ident, event=step, properties={"price": round(rng.uniform(5, 200), 2)})
                p *= 0.7
                if step == "Product Added" and user_id and not identified:
                    identified = True
                    ident = user_id
                    session.emit("identify", ident, traits={"plan": rng.choice(["free", "pro"])})
            clock = session.clock
            for msg in session.flush():
                yield msg
                if rng.random() < shape.duplicate_rate:
                    yield dict(msg)
