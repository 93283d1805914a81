"""Rate limits per API key: a token bucket each, with the clock passed in.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens a second; a request
takes one or is refused with the time until one is back (the Retry-After). Buckets live in
one gateway process: with N copies behind a load balancer a key gets up to N times the rate,
which the operator sets knowing N (a shared limit would need shared state, which the gateway
avoids on purpose).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    """``tokens`` as of ``updated`` (seconds on the limiter's clock)."""

    rate: float
    burst: float
    tokens: float
    updated: float

    def take(self, now: float, cost: float = 1.0) -> float:
        """Take ``cost`` tokens if there are enough: 0.0. Otherwise take none and return the
        seconds until there will be."""
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.updated = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate

    def full_at(self) -> float:
        """When the bucket is full again: until then it remembers something."""
        return self.updated + (self.burst - self.tokens) / self.rate


class RateLimits:
    """One bucket per name (an API key id), made full on first sight.

    Memory stays bounded: when ``max_buckets`` is reached, the buckets that are full again
    (they would be made anew identical) are dropped; if all are busy, all are, which only
    ever errs on the generous side.
    """

    def __init__(
        self,
        rate: float,
        burst: float,
        clock: Callable[[], float] = time.monotonic,
        max_buckets: int = 100_000,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, not {rate}, {burst}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_buckets = max_buckets
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, name: str, cost: float = 1.0) -> float:
        """0.0 when ``name`` may go ahead; otherwise the seconds until it may."""
        now = self._clock()
        bucket = self._buckets.get(name)
        if bucket is None:
            if len(self._buckets) >= self._max_buckets:
                self._forget_idle(now)
            bucket = self._buckets[name] = TokenBucket(self.rate, self.burst, self.burst, now)
        return bucket.take(now, cost)

    def exhausted(self, name: str) -> float:
        """Like ``take`` with nothing taken: the seconds until one token is there (0.0: now)."""
        bucket = self._buckets.get(name)
        if bucket is None:
            return 0.0
        now = self._clock()
        waited = bucket.take(now, 1.0)
        if waited == 0.0:
            bucket.tokens += 1.0
        return waited

    def __len__(self) -> int:
        return len(self._buckets)

    def _forget_idle(self, now: float) -> None:
        idle = [name for name, bucket in self._buckets.items() if bucket.full_at() <= now]
        for name in idle:
            del self._buckets[name]
        if len(self._buckets) >= self._max_buckets:
            self._buckets.clear()
