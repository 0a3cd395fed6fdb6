"""The deadline wheel with a scheduler driven by hand: no loop, no clock, no sleeps."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshkit.transport.deadlines import DeadlineWheel


class Timer:
    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Scheduler:
    def __init__(self) -> None:
        self.timers: list[Timer] = []

    def __call__(self, when: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(when, callback)
        self.timers.append(timer)
        return timer

    def advance_to(self, now: float) -> None:
        for timer in sorted(self.timers, key=lambda t: t.when):
            if timer.when <= now and not timer.cancelled:
                self.timers.remove(timer)
                timer.callback()


def make(resolution: float = 0.005) -> tuple[DeadlineWheel[int], Scheduler, list[int]]:
    expired: list[int] = []
    sched = Scheduler()
    return DeadlineWheel(sched, expired.append, resolution), sched, expired


def test_one_timer_per_bucket() -> None:
    wheel, sched, _ = make(0.01)
    for key in range(100):
        wheel.add(key, 1.0001 + key * 0.00009)  # all within one 10 ms bucket
    assert len(sched.timers) == 1
    assert len(wheel) == 100


def test_fires_never_early_and_at_most_one_resolution_late() -> None:
    wheel, sched, expired = make(0.01)
    wheel.add(1, 1.001)
    sched.advance_to(1.0009)
    assert expired == []
    sched.advance_to(1.01)
    assert expired == [1]


def test_discarded_keys_do_not_expire() -> None:
    wheel, sched, expired = make()
    wheel.add(1, 1.0)
    wheel.add(2, 1.0)
    wheel.discard(1)
    wheel.discard(99)  # unknown keys are fine
    sched.advance_to(2.0)
    assert expired == [2]
    assert len(wheel) == 0


def test_close_cancels_timers() -> None:
    wheel, sched, expired = make()
    wheel.add(1, 1.0)
    wheel.close()
    assert all(t.cancelled for t in sched.timers)
    sched.advance_to(2.0)
    assert expired == []


def test_resolution_must_be_positive() -> None:
    with pytest.raises(ValueError):
        DeadlineWheel(Scheduler(), print, 0)


@given(st.lists(st.tuples(st.floats(0, 100), st.booleans()), max_size=60), st.floats(0, 120))
def test_exactly_the_undiscarded_due_keys_expire(entries: list[tuple[float, bool]], now: float) -> None:
    wheel, sched, expired = make(0.005)
    for key, (deadline, _) in enumerate(entries):
        wheel.add(key, deadline)
    for key, (_, discard) in enumerate(entries):
        if discard:
            wheel.discard(key)
    sched.advance_to(now)
    due = {k for k, (d, discard) in enumerate(entries) if not discard and d <= now - 0.005 - 1e-9}
    maybe = {k for k, (d, discard) in enumerate(entries) if not discard and d <= now}
    assert due <= set(expired) <= maybe
    assert len(expired) == len(set(expired))
