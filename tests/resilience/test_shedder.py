from __future__ import annotations

import pytest

from meshkit.resilience.bulkhead import Bulkhead
from meshkit.resilience.shedder import AdaptiveConcurrency, ShedderConfig


def run_window(s: AdaptiveConcurrency, now: float, latency: float, calls: int, fill: bool = False) -> float:
    """``calls`` calls that each take ``latency``; with ``fill``, the limit is reached first."""
    admitted = 0
    if fill:
        while s.try_acquire():
            admitted += 1
        for _ in range(admitted):
            s.release(now, latency)
    for _ in range(calls):
        assert s.try_acquire()
        s.release(now, latency)
    return s.limit


def test_refuses_beyond_the_limit_and_counts() -> None:
    s = AdaptiveConcurrency(ShedderConfig(initial_limit=4, min_limit=1))
    assert [s.try_acquire() for _ in range(5)] == [True] * 4 + [False]
    assert s.in_flight == 4 and s.rejected == 1 and s.admitted == 4
    s.release(0.01, 0.01)
    assert s.try_acquire()


def test_grows_by_sqrt_only_when_the_limit_was_reached() -> None:
    s = AdaptiveConcurrency(ShedderConfig(initial_limit=16, window=0.25, min_samples=10), now=0.0)
    assert run_window(s, 0.25, 0.005, 10) == 16  # no demand beyond the limit: unchanged
    assert run_window(s, 0.5, 0.005, 10, fill=True) == 20  # 16 + sqrt(16)


def test_backs_off_when_latency_passes_tolerance_times_baseline() -> None:
    s = AdaptiveConcurrency(ShedderConfig(initial_limit=100, window=0.25, min_samples=10, tolerance=2.0, backoff=0.5))
    run_window(s, 0.25, 0.010, 10)  # baseline 10 ms
    assert s.baseline == pytest.approx(0.010)
    assert run_window(s, 0.5, 0.019, 10) == 100  # 1.9x: within tolerance
    assert run_window(s, 0.75, 0.021, 10) == 50  # 2.1x: back off
    assert run_window(s, 1.0, 0.050, 10) == 25
    assert s.baseline == pytest.approx(0.010)  # the slow windows did not raise the baseline


def test_loop_lag_backs_off_at_once_and_never_below_min() -> None:
    s = AdaptiveConcurrency(ShedderConfig(initial_limit=8, min_limit=4, max_lag=0.05, backoff=0.5))
    s.on_lag(0.0, 0.01)
    assert s.limit == 8
    s.on_lag(0.1, 0.2)
    assert s.limit == 4
    s.on_lag(0.2, 0.2)
    assert s.limit == 4


def test_cpu_signal_is_optional() -> None:
    off = AdaptiveConcurrency(ShedderConfig(initial_limit=16))
    off.on_cpu(0.0, 1.0)
    run_window(off, 0.1, 0.01, 10, fill=True)
    assert off.limit > 16
    on = AdaptiveConcurrency(ShedderConfig(initial_limit=16, cpu_threshold=0.9, backoff=0.5))
    on.on_cpu(0.0, 0.95)
    run_window(on, 0.1, 0.01, 10, fill=True)
    assert on.limit == 8


def test_baseline_is_relearnt_after_its_window() -> None:
    s = AdaptiveConcurrency(ShedderConfig(initial_limit=100, baseline_window=1.0))
    run_window(s, 0.1, 0.001, 10)
    run_window(s, 0.5, 0.004, 10)
    assert s.baseline == pytest.approx(0.001)
    run_window(s, 1.5, 0.004, 10)  # the 1 ms window is older than 1 s now
    assert s.baseline == pytest.approx(0.004)


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="min_limit"):
        ShedderConfig(initial_limit=2, min_limit=4)
    with pytest.raises(ValueError, match="backoff"):
        ShedderConfig(backoff=1.5)


def test_bulkhead_counts_and_refuses() -> None:
    b = Bulkhead(2)
    assert [b.try_acquire() for _ in range(3)] == [True, True, False]
    b.release()
    assert b.try_acquire() and b.rejected == 1
    with pytest.raises(ValueError):
        Bulkhead(0)
