from __future__ import annotations

import math

import pytest

from meshkit.resilience.bulkhead import Bulkhead
from meshkit.resilience.shedder import AdaptiveConcurrency, ShedderConfig


def config(**kw: float) -> ShedderConfig:
    base: dict[str, float] = dict(initial_limit=8, min_limit=2, window=0.25, min_samples=4, tolerance=1.5)
    base.update(kw)
    return ShedderConfig(**base)  # type: ignore[arg-type]


def calls(s: AdaptiveConcurrency, at: float, latency: float, n: int = 0) -> None:
    """``n`` calls (default: one window's worth) one after another, all finishing at ``at``."""
    for _ in range(n or s.config.min_samples):
        assert s.try_acquire()
        s.release(at, latency)


def burst(s: AdaptiveConcurrency, at: float, latency: float) -> int:
    """Take every slot (and one refusal: the limit was reached), then finish them all at ``at``."""
    taken = 0
    while s.try_acquire():
        taken += 1
    for _ in range(taken):
        s.release(at, latency)
    return taken


def learnt(s: AdaptiveConcurrency, baseline: float) -> None:
    """Give ``s`` a baseline from unloaded windows, then make sure the first-overload probe is done."""
    calls(s, 0.25, baseline)
    assert s.baseline == pytest.approx(baseline) and not s.probing
    s._probed_at = 0.25  # as if a probe had just run


def test_refuses_beyond_the_limit_and_counts() -> None:
    s = AdaptiveConcurrency(config(initial_limit=4))
    assert [s.try_acquire() for _ in range(5)] == [True] * 4 + [False]
    assert s.in_flight == 4 and s.admitted == 4
    assert not s.try_enqueue() and s.rejected == 1  # no waiting room by default
    s.refuse()  # the server's own fast path
    assert s.rejected == 2
    s.release(0.01, 0.01)
    assert s.try_acquire()


def test_an_optional_waiting_room() -> None:
    s = AdaptiveConcurrency(config(initial_limit=4, queue_share=0.5))
    while s.try_acquire():
        pass
    assert [s.try_enqueue() for _ in range(3)] == [True, True, False]
    assert s.queued == 2 and s.rejected == 1 and s.queue_full()
    s.release(0.01, 0.01)
    s.start_queued()
    assert s.in_flight == 4 and s.queued == 1 and s.admitted == 5
    s.drop_queued()
    assert s.queued == 0 and not s.queue_full()


def test_with_a_cpu_signal_spare_cpu_admits_more_and_a_busy_slow_process_admits_less() -> None:
    def after(cpu: float, latency: float, saturated: bool) -> float:
        s = AdaptiveConcurrency(config(initial_limit=16, cpu_busy=0.95, min_samples=16))
        learnt(s, 0.010)
        s.on_cpu(0.3, cpu)
        (burst if saturated else calls)(s, 0.50, latency)
        return s.limit

    assert after(cpu=0.70, latency=0.014, saturated=True) == 20  # 1.4x, but the CPU has room: grow
    assert after(cpu=0.99, latency=0.014, saturated=True) == 16  # busy, within tolerance: hold
    assert after(cpu=0.70, latency=0.040, saturated=False) == 16  # slow, CPU not busy (a slow database): hold
    assert after(cpu=0.99, latency=0.040, saturated=False) == 8  # busy and 4x: shed (at most halved)


def test_first_overload_probes_the_unloaded_latency_then_restores_the_limit() -> None:
    s = AdaptiveConcurrency(config(initial_limit=8))
    taken = 0
    while s.try_acquire():
        taken += 1
    assert taken == 8
    for _ in range(4):  # the 4th completion ends the window: saturated, so a probe starts
        s.release(0.25, 0.050)
    assert s.probing and s.limit == 1 and s.baseline == pytest.approx(0.050)
    saved = 8 + math.sqrt(8)  # the window itself was fast and saturated: it grew first
    assert not s.try_acquire()  # draining: 4 still in flight
    for _ in range(4):
        s.release(0.30, 0.200)  # calls admitted before the probe do not count
    assert s.baseline == pytest.approx(0.050)
    assert s.try_acquire() and not s.try_acquire()  # measuring at the probe limit, 1
    s.release(0.40, 0.010)
    calls(s, 0.55, 0.010, n=3)  # one window of unloaded calls
    assert not s.probing and s.baseline == pytest.approx(0.010)
    assert s.limit == pytest.approx(saved)


def test_decreases_in_proportion_when_latency_passes_tolerance() -> None:
    s = AdaptiveConcurrency(config(initial_limit=100))
    learnt(s, 0.010)
    calls(s, 0.50, 0.018)  # 1.8x: limit *= 1.5 / 1.8
    assert s.limit == pytest.approx(100 * 1.5 / 1.8)
    calls(s, 0.75, 0.100)  # 10x: at most halved in one step
    assert s.limit == pytest.approx(100 * 1.5 / 1.8 / 2)


def test_holds_between_the_thresholds_and_grows_only_with_demand_and_room() -> None:
    s = AdaptiveConcurrency(config(initial_limit=16))
    learnt(s, 0.010)
    burst(s, 0.50, 0.014)  # 1.4x: saturated but no room: hold
    assert s.limit == 16
    calls(s, 0.75, 0.010)  # room, but the limit was not reached: hold
    assert s.limit == 16
    burst(s, 1.00, 0.011)  # saturated and 1.1x: grow by sqrt
    assert s.limit == pytest.approx(20)


def test_never_leaves_its_bounds() -> None:
    s = AdaptiveConcurrency(config(initial_limit=4, min_limit=3, max_limit=5))
    learnt(s, 0.010)
    burst(s, 0.50, 0.010)
    assert s.limit == 5
    calls(s, 0.75, 1.0)
    assert s.limit == 3


def test_loop_lag_backs_off_at_once_without_a_baseline() -> None:
    s = AdaptiveConcurrency(config(initial_limit=8, min_limit=4, backoff=0.5))
    s.on_lag(0.0, 0.01)
    assert s.limit == 8
    s.on_lag(0.1, 0.2)
    assert s.limit == 4 and s.baseline is None
    s.on_lag(0.2, 0.2)
    assert s.limit == 4


def test_cpu_threshold_is_an_optional_hard_signal() -> None:
    off = AdaptiveConcurrency(config(initial_limit=16))
    learnt(off, 0.010)
    off.on_cpu(0.3, 0.5)
    burst(off, 0.50, 0.010)
    assert off.limit == 20
    on = AdaptiveConcurrency(config(initial_limit=16, cpu_threshold=0.4, backoff=0.5))
    learnt(on, 0.010)
    on.on_cpu(0.3, 0.5)  # over the threshold: overloaded, whatever the latency
    burst(on, 0.50, 0.010)
    assert on.limit == 8


def test_a_probe_that_cannot_drain_is_abandoned() -> None:
    s = AdaptiveConcurrency(config(initial_limit=8, probe_timeout=1.0))
    for _ in range(8):
        assert s.try_acquire()  # eight calls that never finish
    s._start_probe(0.0)
    assert s.probing and s.limit == 1
    s.on_lag(0.5, 0.0)
    assert s.probing
    s.on_lag(1.5, 0.0)  # stuck calls: give up the probe, restore the limit
    assert not s.probing and s.limit == 8


def test_baseline_is_relearnt_after_its_horizon() -> None:
    s = AdaptiveConcurrency(config(initial_limit=100, baseline_window=1.0))
    calls(s, 0.25, 0.001)
    calls(s, 0.50, 0.004)
    assert s.baseline == pytest.approx(0.001)
    calls(s, 1.50, 0.004)  # the 1 ms window is older than 1 s now
    assert s.baseline == pytest.approx(0.004)


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="min_limit"):
        ShedderConfig(initial_limit=2, min_limit=4)
    with pytest.raises(ValueError, match="backoff"):
        ShedderConfig(backoff=1.5)
    with pytest.raises(ValueError, match="tolerance"):
        ShedderConfig(tolerance=1.0)


def test_bulkhead_counts_and_refuses() -> None:
    b = Bulkhead(2)
    assert [b.try_acquire() for _ in range(3)] == [True, True, False]
    b.release()
    assert b.try_acquire() and b.rejected == 1
    with pytest.raises(ValueError):
        Bulkhead(0)
