"""The classic three-state circuit breaker (Sentinel / resilience4j semantics). Pure.

CLOSED: calls pass; outcomes are counted over a rolling window. Once at least ``min_calls`` were
seen, the breaker OPENs when the error ratio, the slow-call ratio or the error count passes its
threshold. OPEN: calls are refused for ``open_for`` seconds. HALF_OPEN: exactly
``half_open_probes`` calls go through; if they all succeed (and are not slow) it CLOSEs, the first
failure OPENs it again. Every change is reported to ``on_change`` so metrics and logs see it.
Implements :class:`~meshkit.resilience.breaker_protocol.Breaker`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from meshkit.resilience.window import RollingCounts


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerConfig:
    """Defaults follow resilience4j (50 % failure rate, at least 20 calls in a 10 s window, 5 s open,
    a few half-open probes); ``slow_ratio`` and ``error_count`` are off unless set."""

    window: float = 10.0
    buckets: int = 10
    min_calls: int = 20
    error_ratio: float | None = 0.5
    slow_ratio: float | None = None
    slow_call: float = 1.0
    error_count: int | None = None
    open_for: float = 5.0
    half_open_probes: int = 3


class CircuitBreaker:
    def __init__(
        self,
        config: BreakerConfig | None = None,
        on_change: Callable[[BreakerState, BreakerState], None] | None = None,
    ) -> None:
        self.config = config or BreakerConfig()
        self.state = BreakerState.CLOSED
        self._counts = RollingCounts(self.config.window, self.config.buckets)
        self.opened_at = 0.0
        self._probes_left = 0
        self._probes_ok = 0
        self._on_change = on_change

    def _move(self, state: BreakerState, now: float) -> None:
        old, self.state = self.state, state
        if state is BreakerState.OPEN:
            self.opened_at = now
        elif state is BreakerState.HALF_OPEN:
            self._probes_left = self.config.half_open_probes
            self._probes_ok = 0
        else:
            self._counts.reset()
        if self._on_change is not None and old is not state:
            self._on_change(old, state)

    def allow(self, now: float) -> bool:
        """May a call go out now? (In HALF_OPEN this takes one of the probe slots.)"""
        if self.state is BreakerState.OPEN:
            if now - self.opened_at < self.config.open_for:
                return False
            self._move(BreakerState.HALF_OPEN, now)
        if self.state is BreakerState.HALF_OPEN:
            if self._probes_left <= 0:
                return False
            self._probes_left -= 1
        return True

    def would_allow(self, now: float) -> bool:
        """Whether ``allow`` could let a call through now, without taking a half-open probe slot
        (for calls whose outcome says nothing about the backend, like a stream's opening)."""
        if self.state is BreakerState.OPEN:
            return now - self.opened_at >= self.config.open_for
        return self.state is BreakerState.CLOSED or self._probes_left > 0

    def release(self) -> None:
        """A call let through gave no verdict (its caller cancelled it, or it failed in a way
        that says nothing about the backend): in HALF_OPEN its probe slot is given back, so the
        breaker neither closes without evidence nor waits forever for an outcome."""
        if self.state is BreakerState.HALF_OPEN and self._probes_left < self.config.half_open_probes:
            self._probes_left += 1

    release_probe = release

    def retry_after(self, now: float) -> float:
        if self.state is BreakerState.OPEN:
            return max(0.0, self.opened_at + self.config.open_for - now)
        return 0.0

    def on_success(self, now: float, latency: float = 0.0) -> None:
        self._record(now, failed=False, slow=latency >= self.config.slow_call)

    def on_failure(self, now: float, latency: float = 0.0) -> None:
        self._record(now, failed=True, slow=latency >= self.config.slow_call)

    def _record(self, now: float, failed: bool, slow: bool) -> None:
        c = self.config
        if self.state is BreakerState.HALF_OPEN:
            bad = failed or (slow and c.slow_ratio is not None)
            if bad:
                self._move(BreakerState.OPEN, now)
                return
            self._probes_ok += 1
            if self._probes_ok >= c.half_open_probes:
                self._move(BreakerState.CLOSED, now)
            return
        if self.state is BreakerState.OPEN:
            return  # a straggler that left before the breaker opened
        self._counts.add(now, failed, slow)
        calls, failures, slow_calls = self._counts.totals(now)
        if calls < c.min_calls:
            return
        if (
            (c.error_ratio is not None and failures / calls >= c.error_ratio)
            or (c.slow_ratio is not None and slow_calls / calls >= c.slow_ratio)
            or (c.error_count is not None and failures >= c.error_count)
        ):
            self._move(BreakerState.OPEN, now)
