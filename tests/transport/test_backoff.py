from __future__ import annotations

import random

import pytest

from meshkit.transport.backoff import Backoff, BackoffPolicy


def test_schedule_without_jitter_is_grpcs() -> None:
    b = Backoff(BackoffPolicy(jitter=0.0), random.Random(1))
    delays = [b.next_delay() for _ in range(14)]
    expected = [min(1.0 * 1.6**i, 120.0) for i in range(14)]
    assert delays == pytest.approx(expected)
    assert delays[-1] == 120.0  # capped
    assert b.failures == 14


def test_jitter_stays_within_twenty_percent() -> None:
    b = Backoff(BackoffPolicy(), random.Random(42))
    base = 1.0
    for _ in range(30):
        d = b.next_delay()
        assert 0.8 * base - 1e-9 <= d <= 1.2 * base + 1e-9
        base = min(base * 1.6, 120.0)


def test_jitter_actually_varies() -> None:
    delays = {Backoff(BackoffPolicy(), random.Random(seed)).next_delay() for seed in range(20)}
    assert len(delays) > 10


def test_reset_starts_over() -> None:
    b = Backoff(BackoffPolicy(jitter=0.0))
    for _ in range(5):
        b.next_delay()
    b.reset()
    assert b.failures == 0
    assert b.next_delay() == 1.0


@pytest.mark.parametrize(
    "kwargs",
    [{"initial": 0}, {"multiplier": 0.5}, {"jitter": 1.0}, {"jitter": -0.1}, {"maximum": 0.5}],
)
def test_invalid_policies_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BackoffPolicy(**kwargs)
