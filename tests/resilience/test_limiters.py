from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshkit.resilience.retry_budget import RetryBudget
from meshkit.resilience.token_bucket import TokenBucket


def test_token_bucket_burst_then_rate() -> None:
    b = TokenBucket(rate=10, burst=5, now=0)
    assert [b.try_acquire(0)[0] for _ in range(6)] == [True] * 5 + [False]
    allowed, retry_after = b.try_acquire(0)
    assert not allowed and retry_after == pytest.approx(0.1)
    assert b.try_acquire(0.1)[0] and not b.try_acquire(0.1)[0]
    assert b.available(100) == 5  # never more than the burst


@given(st.lists(st.floats(0, 0.5), min_size=1, max_size=200), st.floats(1, 100), st.integers(1, 20))
def test_token_bucket_never_admits_more_than_burst_plus_rate_times_time(
    gaps: list[float], rate: float, burst: int
) -> None:
    b = TokenBucket(rate, burst, now=0)
    now, admitted = 0.0, 0
    for gap in gaps:
        now += gap
        admitted += b.try_acquire(now)[0]
    assert admitted <= burst + rate * now + 1e-6


def test_token_bucket_refuses_bad_settings() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=1, now=0)
    with pytest.raises(ValueError):
        TokenBucket(rate=1, burst=2, now=0).try_acquire(0, tokens=3)


@pytest.mark.parametrize(
    ("failures", "successes", "can_retry"), [(0, 0, True), (4, 0, True), (5, 0, False), (5, 10, True)]
)
def test_retry_budget(failures: int, successes: int, can_retry: bool) -> None:
    b = RetryBudget()
    for _ in range(failures):
        b.on_failure()
    for _ in range(successes):
        b.on_success()
    assert b.can_retry() is can_retry


def test_retry_budget_bounds_amplification() -> None:
    # Every call fails; each failure may be retried only while the budget allows.
    b = RetryBudget()
    sent = 0
    for _ in range(1000):
        sent += 1
        b.on_failure()
        while b.can_retry():
            sent += 1
            b.on_failure()
    assert sent <= 1000 + 10  # the whole outage costs at most a budget's worth of extra attempts
