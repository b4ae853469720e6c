"""Per-write-key token buckets (pure; the clock is passed in, so tests need no sleeping).

Every event a request carries is charged, accepted or rejected (a rejected event still
costs a dead-letter record), and so is every body byte. A request bigger than the bucket
passes only with a full bucket and leaves the key in debt, so over any window a key gets
at most ``burst + rate x seconds`` plus one request: a 2,500-event batch is charged 2,500.

The buckets live in one collector process: N replicas behind a load balancer admit N
times the configured rate (docs/runbook.md says how to size it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    rate: float  # tokens per second
    capacity: float
    tokens: float = field(default=-1.0)
    updated: float | None = None

    def take(self, amount: float, now: float) -> float:
        """Take ``amount`` tokens; returns 0 if allowed, else seconds until it would be.

        Allowed when the bucket holds ``min(amount, capacity)``; the full amount is taken,
        so the balance can go negative (debt) and later requests wait it off.
        """
        if self.updated is None:
            self.tokens, self.updated = self.capacity, now
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        needed = min(amount, self.capacity)
        if needed <= self.tokens:
            self.tokens -= amount
            return 0.0
        return (needed - self.tokens) / self.rate


class _Buckets:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.capacity = burst if burst > 0 else max(rate * 2, 1.0)
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, key: str, amount: float, now: float) -> float:
        if self.rate <= 0:
            return 0.0
        bucket = self._buckets.setdefault(key, TokenBucket(self.rate, self.capacity))
        return bucket.take(amount, now)


class RateLimiter:
    """Events and bytes per second per write key; a rate ``<= 0`` turns that limit off."""

    def __init__(self, rate: float, burst: float = 0.0, bytes_rate: float = 0.0, bytes_burst: float = 0.0):
        self.events = _Buckets(rate, burst)
        self.bytes = _Buckets(bytes_rate, bytes_burst)

    def bytes_retry_after(self, key: str, size: int, now: float) -> float:
        """Charge a body's bytes before it is parsed (so a flood costs no parsing)."""
        return self.bytes.take(key, float(size), now)

    def retry_after(self, key: str, events: int, now: float) -> float:
        """Charge ``events`` (accepted and rejected alike)."""
        return self.events.take(key, float(events), now)


def retry_headers(wait_s: float) -> dict[str, str]:
    """A 429's headers: whole seconds, rounded up, never 0. ``Retry-After`` (RFC 9110) is what
    analytics-node, analytics-next >= 1.82 and the Python SDKs honour; analytics-next up to
    1.81 reads ``X-RateLimit-Reset`` instead, as seconds to wait (not an epoch time)."""
    seconds = str(max(1, math.ceil(wait_s)))
    return {"Retry-After": seconds, "X-RateLimit-Reset": seconds}
