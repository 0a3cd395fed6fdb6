"""Adaptive concurrency limit for load shedding, fitted to one asyncio process. Pure.

An event loop has no thread pool to queue in: every admitted call shares one CPU with every
other, so past the knee each extra call slows *all* of them (and they all miss their deadlines:
the collapse). The shedder keeps the number of calls in flight near the knee and refuses the
excess at once, so the calls it admits finish about as fast as on an idle process.

Once per ``window`` seconds (with at least ``min_samples`` completions) it compares the window's
mean latency with the **baseline**, the latency of this service when it is not queueing, and
looks at the process's CPU use (reported by the shell):

* mean > ``tolerance`` x baseline and the CPU busy (>= ``cpu_busy``): **decrease** in
  proportion, ``limit *= max(0.5, tolerance * baseline / mean)`` (Netflix Gradient's rule; one
  step undoes most of a spike);
* the limit was reached and the CPU is not busy: **increase** by ``sqrt(limit)`` (there was
  demand, and room);
* otherwise hold (this is where it settles: the fewest calls in flight that keep the CPU busy).

Why CPU and not latency alone: in an event loop latency rises with every call in flight (each
loop iteration grows, so timers fire later) long before the CPU is full; a latency-only
controller settles with the CPU partly idle (measured: 80 % goodput at 10x load instead of
95 %). Without a CPU signal (no shell, as in unit tests) latency alone decides: increase only
while the mean is within half the tolerance.

A loop lag over ``max_lag`` (reported by the shell) or, optionally, CPU over ``cpu_threshold``
also decreases it, by ``backoff``: lag is the truest overload signal of an asyncio process (a
timer that fires late means every callback is waiting), and needs no baseline.

The baseline is the lowest window mean of the last ``baseline_window`` seconds. A server that
is overloaded from its first call never sees an unloaded window, so while the limit is being hit
the shedder **probes** every ``probe_every`` seconds (and at the first overload): it lowers the
limit to ``probe_limit``, waits until the calls in flight drain to it, measures one window, and
restores the limit (as TCP Vegas and Netflix's Vegas limit re-learn their no-load RTT). Time,
latency, lag and CPU are passed in.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class ShedderConfig:
    """Defaults (sources in docs/resilience.md): start at 4 in flight and grow while the CPU has
    room (by sqrt(limit) a window: 4 to 64 in about 1.5 s; starting at 16 let a cold spike admit
    calls that took 8x the unloaded p99), never below 2 or above 10,000; latency tolerance 2x (Netflix Gradient's; 1.5x,
    Gradient2's, keeps a CPU-bound asyncio service below full use); loop lag over 50 ms is
    overload; the CPU counts as busy from 95 % (measured: at 90 % a CPU-heavy service settles
    with a tenth of its CPU idle)."""

    initial_limit: int = 4
    min_limit: int = 2
    max_limit: int = 10_000
    window: float = 0.1
    min_samples: int = 10
    tolerance: float = 2.0
    backoff: float = 0.9
    max_lag: float = 0.05
    cpu_threshold: float | None = None
    baseline_window: float = 30.0
    probe_every: float = 10.0
    probe_limit: int = 1
    #: A probe that cannot drain (calls stuck in flight) is abandoned after this many seconds.
    probe_timeout: float = 1.0
    #: Calls that may wait for a slot, as a share of the limit (see ``try_enqueue``); 0: none.
    queue_share: float = 0.0
    #: Process CPU use (from the shell) at which the process counts as busy: more calls in flight
    #: would only queue for the CPU (go-zero sheds from 90 % CPU too).
    cpu_busy: float = 0.95

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
        if self.window <= 0 or self.max_lag <= 0 or self.probe_limit < 1:
            raise ValueError("window and max_lag must be > 0, probe_limit >= 1")


_MEASURING = 2
_DRAINING = 1


class AdaptiveConcurrency:
    def __init__(self, config: ShedderConfig | None = None, now: float = 0.0) -> None:
        self.config = c = config or ShedderConfig()
        self.limit = float(c.initial_limit)
        self.in_flight = 0
        self.queued = 0
        self.rejected = 0
        self.admitted = 0
        self.baseline: float | None = None
        #: The latest process CPU use reported by the shell (None: unknown, latency alone decides).
        self.cpu: float | None = None
        self._window_start = now
        self._sum = 0.0
        self._samples = 0
        self._saturated = False
        self._overloaded = False  # a lag or CPU signal arrived in this window
        self._means: collections.deque[tuple[float, float]] = collections.deque()  # (time, mean), increasing
        self._probe = 0  # 0, _DRAINING or _MEASURING
        self._probed_at: float | None = None
        self._probe_started = now
        self._saved_limit = self.limit

    def reconfigure(self, config: ShedderConfig) -> None:
        """Take new settings live (a policy revision), keeping what was learnt: the limit moves
        into the new bounds, the baseline and the window in progress stay."""
        self.config = config
        self.limit = min(float(config.max_limit), max(float(config.min_limit), self.limit))
        self._saved_limit = min(float(config.max_limit), max(float(config.min_limit), self._saved_limit))

    # -- the per-call part: a comparison and an increment -----------------------------------
    def try_acquire(self) -> bool:
        if self.in_flight >= self.limit:
            self._saturated = True
            return False
        self.in_flight += 1
        self.admitted += 1
        return True

    def refuse(self) -> None:
        """Count a call the shell refused on its own fast path (the limit was reached)."""
        self.rejected += 1
        self._saturated = True

    def try_enqueue(self) -> bool:
        """Refused a slot: may the call wait for one? A few may (``queue_share`` of the limit,
        at least one): an event loop admits new calls only when it polls, so without a short
        queue the slots that free up between polls stay empty and the CPU idles under overload.
        The shell starts a waiting call (``start_queued``) as soon as a slot is released."""
        if self.queued >= self.limit * self.config.queue_share or self._probe:
            self.rejected += 1
            return False
        self.queued += 1
        self._saturated = True
        return True

    def queue_full(self) -> bool:
        return self.queued >= self.limit * self.config.queue_share or self._probe != 0

    def start_queued(self) -> None:
        """A waiting call takes the slot just released."""
        self.queued -= 1
        self.in_flight += 1
        self.admitted += 1

    def drop_queued(self) -> None:
        """A waiting call gave up (its caller's deadline passed) or waited too long."""
        self.queued -= 1

    def release(self, now: float, latency: float) -> None:
        self.in_flight -= 1
        if self._probe and now - self._probe_started > self.config.probe_timeout:
            self._end_probe(now)
        if self._probe == _DRAINING:
            if self.in_flight < self.config.probe_limit:
                self._probe = _MEASURING  # only calls admitted from now on are measured
                self._restart(now)
            return
        self._sum += latency
        self._samples += 1
        if now - self._window_start >= self.config.window and self._samples >= self.config.min_samples:
            self._adjust(now)

    @property
    def probing(self) -> bool:
        return self._probe != 0

    # -- signals from the shell ----------------------------------------------------------
    def on_lag(self, now: float, lag: float) -> None:
        if self._probe and now - self._probe_started > self.config.probe_timeout:
            self._end_probe(now)
        if lag > self.config.max_lag and not self._probe:
            self.limit = max(float(self.config.min_limit), self.limit * self.config.backoff)
            self._overloaded = True

    def on_cpu(self, now: float, usage: float) -> None:
        self.cpu = usage
        threshold = self.config.cpu_threshold
        if threshold is not None and usage > threshold:
            self._overloaded = True

    # -- the control law ----------------------------------------------------------------------
    def _restart(self, now: float) -> None:
        self._window_start = now
        self._sum = 0.0
        self._samples = 0
        self._saturated = False
        self._overloaded = False

    def _learn_baseline(self, now: float, mean: float) -> float:
        means = self._means
        while means and means[-1][1] >= mean:
            means.pop()  # a monotonic deque: the front is the minimum of the horizon
        means.append((now, mean))
        horizon = now - self.config.baseline_window
        while means[0][0] < horizon:
            means.popleft()
        self.baseline = means[0][1]
        return self.baseline

    def _adjust(self, now: float) -> None:
        c = self.config
        mean = self._sum / self._samples
        baseline = self._learn_baseline(now, mean)
        if self._probe == _MEASURING:
            self._end_probe(now)
            return
        limit = self.limit
        slow = mean > c.tolerance * baseline
        if self.cpu is None:
            busy = slow  # no CPU signal: latency alone
            room = mean <= (1 + (c.tolerance - 1) / 2) * baseline
        else:
            # In an event loop latency rises with every call in flight (timers fire later as each
            # loop iteration grows) long before the CPU is full; so latency says "shed" only
            # when the CPU is busy too, and spare CPU says "admit more".
            busy = self.cpu >= c.cpu_busy
            room = not busy
        if slow and busy:
            limit *= max(0.5, c.tolerance * baseline / mean)
        elif self._overloaded:
            limit *= c.backoff
        elif self._saturated and room:
            limit += math.sqrt(limit)
        self.limit = min(float(c.max_limit), max(float(c.min_limit), limit))
        if self._saturated and (self._probed_at is None or now - self._probed_at >= c.probe_every):
            self._start_probe(now)
        self._restart(now)
        self._saturated = self.in_flight >= self.limit

    def _start_probe(self, now: float) -> None:
        self._saved_limit = self.limit
        self.limit = float(self.config.probe_limit)
        self._probe_started = now
        self._probe = _DRAINING if self.in_flight >= self.config.probe_limit else _MEASURING

    def _end_probe(self, now: float) -> None:
        self._probe = 0
        self._probed_at = now
        self.limit = self._saved_limit
        self._restart(now)
