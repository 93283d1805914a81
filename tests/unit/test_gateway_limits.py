"""Token buckets per API key: a burst at once, then the rate, and how long to wait."""

from __future__ import annotations

import pytest

from engine.gateway.limits import RateLimits, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_a_full_bucket_lets_a_burst_through_then_says_how_long_to_wait() -> None:
    """burst requests pass at once; the next waits 1/rate seconds."""
    clock = Clock()
    limits = RateLimits(rate=4, burst=3, clock=clock)
    assert [limits.take("k") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limits.take("k") == pytest.approx(0.25)
    clock.now += 0.25
    assert limits.take("k") == 0.0
    assert limits.take("k") == pytest.approx(0.25)


def test_a_refused_request_takes_nothing() -> None:
    """Being refused does not dig the hole deeper: the wait does not grow with retries."""
    clock = Clock()
    limits = RateLimits(rate=1, burst=1, clock=clock)
    assert limits.take("k") == 0.0
    waits = [limits.take("k") for _ in range(5)]
    assert waits == [pytest.approx(1.0)] * 5
    clock.now += 1.0
    assert limits.take("k") == 0.0


def test_the_bucket_refills_at_the_rate_up_to_the_burst_and_no_more() -> None:
    """An idle key gets back to a full bucket, never beyond it."""
    clock = Clock()
    limits = RateLimits(rate=10, burst=5, clock=clock)
    for _ in range(5):
        limits.take("k")
    clock.now += 100.0
    assert sum(limits.take("k") == 0.0 for _ in range(8)) == 5


def test_keys_have_separate_buckets() -> None:
    """One key using up its bucket does not hold another back."""
    limits = RateLimits(rate=1, burst=1, clock=Clock())
    assert limits.take("a") == 0.0
    assert limits.take("a") > 0
    assert limits.take("b") == 0.0


def test_exhausted_peeks_without_taking() -> None:
    """exhausted says how long until a token is there, and leaves the bucket as it was."""
    clock = Clock()
    limits = RateLimits(rate=2, burst=1, clock=clock)
    assert limits.exhausted("k") == 0.0
    assert limits.exhausted("k") == 0.0
    limits.take("k")
    assert limits.exhausted("k") == pytest.approx(0.5)
    clock.now += 0.5
    assert limits.exhausted("k") == 0.0
    assert limits.take("k") == 0.0


def test_the_clock_going_backwards_refills_nothing() -> None:
    """A bucket never gains tokens from time that did not pass."""
    bucket = TokenBucket(rate=1, burst=1, tokens=0, updated=10.0)
    assert bucket.take(5.0) == pytest.approx(1.0)


def test_memory_stays_bounded_by_dropping_buckets_that_are_full_again() -> None:
    """At max_buckets, full (idle) buckets go; busy ones keep their state."""
    clock = Clock()
    limits = RateLimits(rate=1, burst=4, clock=clock, max_buckets=3)
    for _ in range(4):
        limits.take("busy")
    clock.now += 0.5
    for name in ("idle-1", "idle-2"):
        limits.take(name)
    clock.now += 1.5  # the idle ones are full again; busy is at 2 of 4 tokens
    limits.take("new")
    assert len(limits) == 2
    assert [limits.take("busy") for _ in range(3)][2] > 0, "busy kept its state"


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 5), (1, 0)])
def test_a_bucket_needs_a_positive_rate_and_room_for_one(rate: float, burst: float) -> None:
    """Settings that could never let a request through are refused."""
    with pytest.raises(ValueError, match="token bucket"):
        RateLimits(rate, burst)
