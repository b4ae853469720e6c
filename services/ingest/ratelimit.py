"""Per-write-key token buckets (pure; the clock is passed in, so tests need no sleeping)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    rate: float  # tokens per second
    capacity: float
    tokens: float = field(default=-1.0)
    updated: float = 0.0

    def take(self, amount: float, now: float) -> float:
        """Take ``amount`` tokens; returns 0 if allowed, else seconds until it would be."""
        if self.tokens < 0:
            self.tokens, self.updated = self.capacity, now
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if amount <= self.tokens:
            self.tokens -= amount
            return 0.0
        return (amount - self.tokens) / self.rate


class RateLimiter:
    """Events per second per write key; ``rate <= 0`` turns limiting off."""

    def __init__(self, rate: float, burst: float = 0.0) -> None:
        self.rate = rate
        self.capacity = burst if burst > 0 else max(rate * 2, 1.0)
        self._buckets: dict[str, TokenBucket] = {}

    def retry_after(self, key: str, events: int, now: float) -> float:
        if self.rate <= 0:
            return 0.0
        bucket = self._buckets.setdefault(key, TokenBucket(self.rate, self.capacity))
        # a request bigger than the bucket could never pass: charge it the full bucket
        return bucket.take(min(float(events), self.capacity), now)


def retry_headers(wait_s: float) -> dict[str, str]:
    """A 429's headers: whole seconds, rounded up, never 0. ``Retry-After`` (RFC 9110) is what
    analytics-node, analytics-next >= 1.82 and the Python SDKs honour; analytics-next up to
    1.81 reads ``X-RateLimit-Reset`` instead, as seconds to wait (not an epoch time)."""
    seconds = str(max(1, math.ceil(wait_s)))
    return {"Retry-After": seconds, "X-RateLimit-Reset": seconds}
