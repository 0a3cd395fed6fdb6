from __future__ import annotations

import random

import pytest

from meshkit.resilience.adaptive_throttle import AdaptiveThrottle
from meshkit.resilience.breaker import BreakerConfig, BreakerState, CircuitBreaker


def feed(b: CircuitBreaker, now: float, ok: int = 0, failed: int = 0, latency: float = 0.0) -> None:
    for _ in range(ok):
        assert b.allow(now)
        b.on_success(now, latency)
    for _ in range(failed):
        if b.allow(now):
            b.on_failure(now, latency)


def test_opens_on_error_ratio_only_after_min_calls() -> None:
    changes: list[tuple[BreakerState, BreakerState]] = []
    b = CircuitBreaker(BreakerConfig(min_calls=10, error_ratio=0.5), on_change=lambda o, n: changes.append((o, n)))
    feed(b, 0, failed=9)
    assert b.state is BreakerState.CLOSED  # 9 calls: below the minimum
    feed(b, 0, failed=1)
    assert b.state is BreakerState.OPEN and changes == [(BreakerState.CLOSED, BreakerState.OPEN)]
    assert not b.allow(4.9) and b.retry_after(4.9) == pytest.approx(0.1)


def test_half_open_lets_exactly_n_probes_then_closes() -> None:
    b = CircuitBreaker(BreakerConfig(min_calls=4, half_open_probes=3, open_for=5))
    feed(b, 0, failed=4)
    assert b.state is BreakerState.OPEN
    assert [b.allow(5.0) for _ in range(4)] == [True, True, True, False]
    assert b.state is BreakerState.HALF_OPEN
    for _ in range(3):
        b.on_success(5.0)
    assert b.state is BreakerState.CLOSED and b.allow(5.0)


def test_a_failed_probe_opens_again() -> None:
    b = CircuitBreaker(BreakerConfig(min_calls=4, open_for=5))
    feed(b, 0, failed=4)
    assert b.allow(5.0)
    b.on_failure(5.0)
    assert b.state is BreakerState.OPEN and not b.allow(9.9) and b.allow(10.0)


def test_slow_call_ratio_and_error_count() -> None:
    slow = CircuitBreaker(BreakerConfig(min_calls=5, error_ratio=None, slow_ratio=0.6, slow_call=0.5))
    feed(slow, 0, ok=2)
    feed(slow, 0, ok=3, latency=0.7)  # 3 of 5 slow = 60 %
    assert slow.state is BreakerState.OPEN
    count = CircuitBreaker(BreakerConfig(min_calls=1, error_ratio=None, error_count=3))
    feed(count, 0, ok=100, failed=2)
    assert count.state is BreakerState.CLOSED
    feed(count, 0, failed=1)
    assert count.state is BreakerState.OPEN


def test_old_failures_roll_out_of_the_window() -> None:
    b = CircuitBreaker(BreakerConfig(min_calls=10, error_ratio=0.5, window=10, buckets=10))
    feed(b, 0, failed=4)
    feed(b, 11, ok=6, failed=4)  # the first 4 failures are 11 s old: 4 of 10 = 40 %
    assert b.state is BreakerState.CLOSED


def test_adaptive_throttle_rejects_the_excess_only() -> None:
    t = AdaptiveThrottle(k=1.5)
    rng = random.Random(1)
    assert t.reject_probability(0) == 0
    for _ in range(1000):
        t.on_result(0, accepted=True)
    assert t.reject_probability(0) == 0  # healthy: never throttles
    # The backend now accepts only 1 in 10.
    sent = 0
    for i in range(10_000):
        if t.allow(1, rng):
            sent += 1
            t.on_result(1, accepted=(i % 10 == 0))
    assert t.reject_probability(1) > 0.5
    assert sent < 5_000  # most of the doomed calls never left the client


def test_would_allow_answers_without_taking_a_probe() -> None:
    b = CircuitBreaker(BreakerConfig(min_calls=2, open_for=5, half_open_probes=1))
    feed(b, 0, failed=2)
    assert not b.would_allow(4.9) and b.would_allow(5.0)
    assert b.state is BreakerState.OPEN  # asking changed nothing
    assert b.allow(5.0)  # the one probe
    assert not b.would_allow(5.0) and not b.allow(5.0)
    b.release_probe()
    assert b.would_allow(5.0)
