"""Adaptive concurrency limit for load shedding, fitted to one asyncio process. Pure.

An event loop has no thread pool to queue in: every admitted call shares one CPU with every
other, so past the knee each extra call slows *all* of them (and they all miss their deadlines:
the collapse). The shedder keeps the number of calls in flight at the knee and refuses the
excess at once, so the calls it admits finish about as fast as on an idle process.

The limit moves by AIMD, once per ``window`` seconds with at least ``min_samples`` completions:

* **decrease** (``limit *= backoff``) when the window's mean latency is over ``tolerance`` times
  the baseline, when the loop lag reported by the shell is over ``max_lag``, or when the process
  CPU is over ``cpu_threshold`` (optional);
* **increase** (``limit += sqrt(limit)``) when none of these holds and the limit was reached in
  the window (there was demand for more);
* the **baseline** is the lowest window mean of the last ``baseline_window`` seconds: the latency
  of this service when it is not queueing, re-learnt continuously (Vegas' "no-load RTT").

Loop lag is the truest overload signal of an asyncio process (a timer that fires late means
every callback is waiting), the latency ratio catches overload that lag misses (many small
callbacks), and in-flight is what is actually bounded. Time, latency, lag and CPU are passed in.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ShedderConfig:
    """Defaults: start at 64 in flight (Netflix concurrency-limits starts at 20 and grows; 64
    avoids a slow start on fast handlers), never below 4 or above 10,000; latency tolerance 2x
    (Netflix Gradient's default); back off by 0.9 (AIMD default); a loop lag over 50 ms counts
    as overload (go-zero treats 100 ms of CPU-saturation as overload; asyncio lag shows it sooner)."""

    initial_limit: int = 64
    min_limit: int = 4
    max_limit: int = 10_000
    window: float = 0.1
    min_samples: int = 10
    tolerance: float = 2.0
    backoff: float = 0.9
    max_lag: float = 0.05
    cpu_threshold: float | None = None
    baseline_window: float = 30.0

    def __post_init__(self) -> None:
        if not 1 <= self.min_limit <= self.initial_limit <= self.max_limit:
            raise ValueError(
                f"need 1 <= min_limit <= initial_limit <= max_limit, got "
                f"{self.min_limit}, {self.initial_limit}, {self.max_limit}"
            )
        if not 0 < self.backoff < 1:
            raise ValueError(f"backoff must be in (0, 1), got {self.backoff}")
        if self.tolerance <= 1:
            raise ValueError(f"tolerance must be > 1, got {self.tolerance}")
        if self.window <= 0 or self.max_lag <= 0:
            raise ValueError("window and max_lag must be > 0")


class AdaptiveConcurrency:
    def __init__(self, config: ShedderConfig | None = None, now: float = 0.0) -> None:
        self.config = c = config or ShedderConfig()
        self.limit = float(c.initial_limit)
        self.in_flight = 0
        self.rejected = 0
        self.admitted = 0
        self._window_start = now
        self._sum = 0.0
        self._samples = 0
        self._saturated = False
        self._overloaded = False  # a lag or CPU signal arrived in this window
        self.baseline: float | None = None
        self._means: collections.deque[tuple[float, float]] = collections.deque()  # (time, mean), increasing means

    # -- the per-call part: two comparisons and an increment ------------------------------
    def try_acquire(self) -> bool:
        if self.in_flight >= self.limit:
            self.rejected += 1
            self._saturated = True
            return False
        self.in_flight += 1
        self.admitted += 1
        return True

    def release(self, now: float, latency: float) -> None:
        self.in_flight -= 1
        self._sum += latency
        self._samples += 1
        if now - self._window_start >= self.config.window and self._samples >= self.config.min_samples:
            self._adjust(now)

    # -- signals from the shell ----------------------------------------------------------
    def on_lag(self, now: float, lag: float) -> None:
        if lag > self.config.max_lag:
            self._overloaded = True
            self._adjust(now)

    def on_cpu(self, now: float, usage: float) -> None:
        threshold = self.config.cpu_threshold
        if threshold is not None and usage > threshold:
            self._overloaded = True

    # -- the control law ----------------------------------------------------------------------
    def _learn_baseline(self, now: float, mean: float) -> float:
        means = self._means
        while means and means[-1][1] >= mean:
            means.pop()  # a monotonic deque: the front is the minimum of the window
        means.append((now, mean))
        horizon = now - self.config.baseline_window
        while means[0][0] < horizon:
            means.popleft()
        self.baseline = means[0][1]
        return self.baseline

    def _adjust(self, now: float) -> None:
        c = self.config
        slow = False
        if self._samples >= c.min_samples:  # too few calls say nothing about latency
            mean = self._sum / self._samples
            baseline = self._learn_baseline(now, mean)
            slow = mean > c.tolerance * baseline
        if self._overloaded or slow:
            self.limit = max(float(c.min_limit), self.limit * c.backoff)
        elif self._saturated:
            self.limit = min(float(c.max_limit), self.limit + math.sqrt(self.limit))
        self._window_start = now
        self._sum = 0.0
        self._samples = 0
        self._saturated = self.in_flight >= self.limit
        self._overloaded = False
