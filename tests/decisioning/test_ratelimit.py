"""`decisioning.ratelimit`: token buckets per client, on a clock the test moves."""

from __future__ import annotations

import pytest

from decisioning.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_sustained_rate():
    clock = Clock()
    limiter = RateLimiter(per_second=4, burst=5, clients=100, clock=clock)
    assert [limiter.wait("a") for _ in range(5)] == [0.0] * 5
    assert limiter.wait("a") == 0.25  # empty: one token comes back every 0.25 s
    clock.now += 0.125
    assert limiter.wait("a") == 0.125  # refused requests take no token
    clock.now += 0.125
    assert limiter.wait("a") == 0.0
    clock.now += 60  # idle: the bucket refills up to the burst, no further
    assert [limiter.wait("a") for _ in range(6)].count(0.0) == 5


def test_clients_have_their_own_buckets_in_bounded_memory():
    clock = Clock()
    limiter = RateLimiter(per_second=1, burst=1, clients=3, clock=clock)
    assert limiter.wait("a") == 0.0 and limiter.wait("a") > 0
    assert limiter.wait("b") == 0.0
    for n in range(1_000):
        limiter.wait(f"visitor-{n}")
    assert len(limiter) == 3  # never more buckets than clients
    assert limiter.wait("a") == 0.0  # dropped as the longest unseen: back with a full bucket


def test_the_most_recently_seen_clients_are_kept():
    clock = Clock()
    limiter = RateLimiter(per_second=1, burst=1, clients=2, clock=clock)
    limiter.wait("flooder")
    limiter.wait("other")
    assert limiter.wait("flooder") > 0  # seen again: now the most recent
    limiter.wait("newcomer")  # makes room by dropping "other", not "flooder"
    assert limiter.wait("flooder") > 0


@pytest.mark.parametrize(("per_second", "burst", "clients"), [(0, 1, 1), (1, 0, 1), (1, 1, 0)])
def test_nonsense_limits_are_refused(per_second, burst, clients):
    with pytest.raises(ValueError, match="per_second"):
        RateLimiter(per_second, burst, clients)
