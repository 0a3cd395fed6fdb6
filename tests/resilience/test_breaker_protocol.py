"""Both breakers are a :class:`Breaker`: admission, the two verdicts and "no verdict" mean the
same to the middleware for the classic breaker and for SRE adaptive throttling."""

from __future__ import annotations

import random

import pytest

from meshkit.resilience.adaptive_throttle import AdaptiveThrottle
from meshkit.resilience.breaker import BreakerConfig, BreakerState, CircuitBreaker
from meshkit.resilience.breaker_protocol import Breaker


def _classic() -> Breaker:
    return CircuitBreaker(BreakerConfig(min_calls=10, open_for=5))


def _sre() -> Breaker:
    return AdaptiveThrottle(k=1.5, rng=random.Random(3))


@pytest.mark.parametrize("make", [_classic, _sre])
def test_a_healthy_backend_is_never_refused(make: object) -> None:
    breaker = make()  # type: ignore[operator]
    for i in range(1000):
        now = i * 0.01
        assert breaker.allow(now)
        breaker.on_success(now, 0.001)


@pytest.mark.parametrize("make", [_classic, _sre])
def test_a_failing_backend_is_refused_locally(make: object) -> None:
    breaker = make()  # type: ignore[operator]
    refused = 0
    for i in range(200):
        now = i * 0.01
        if breaker.allow(now):
            breaker.on_failure(now, 0.001)
        else:
            refused += 1
    assert refused > 100


@pytest.mark.parametrize("make", [_classic, _sre])
def test_release_gives_no_verdict(make: object) -> None:
    breaker = make()  # type: ignore[operator]
    for i in range(100):
        assert breaker.allow(i * 0.01)
        breaker.release()


def test_release_gives_a_half_open_probe_back() -> None:
    b = CircuitBreaker(BreakerConfig(min_calls=1, open_for=5, half_open_probes=1))
    b.on_failure(0.0)
    assert b.allow(5.0) and b.state is BreakerState.HALF_OPEN and not b.allow(5.0)
    b.release()
    assert b.allow(5.0)


def test_the_throttle_draws_from_its_own_random_source_unless_given_one() -> None:
    own, given = AdaptiveThrottle(rng=random.Random(1)), AdaptiveThrottle()
    for t in (own, given):
        for _ in range(10):
            t.on_failure(0.0)  # reject probability 10/11
    rng = random.Random(1)
    assert [own.allow(0.0) for _ in range(50)] == [given.allow(0.0, rng) for _ in range(50)]
