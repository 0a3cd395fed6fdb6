"""A rolling window of per-bucket counters, shared by the breakers. Pure: time is passed in."""

from __future__ import annotations

import collections
import math


class RollingCounts:
    """Counts (calls, failures, slow) over the last ``window`` seconds in ``buckets`` buckets."""

    __slots__ = ("_buckets", "_span", "buckets", "window")

    def __init__(self, window: float, buckets: int) -> None:
        if window <= 0 or buckets < 1:
            raise ValueError(f"window must be > 0 and buckets >= 1, got {window}, {buckets}")
        self.window = window
        self.buckets = buckets
        self._span = window / buckets
        self._buckets: collections.deque[list[float]] = collections.deque()  # [start, calls, failures, slow]

    def _current(self, now: float) -> list[float]:
        start = math.floor(now / self._span) * self._span
        buckets = self._buckets
        while buckets and buckets[0][0] <= now - self.window:
            buckets.popleft()
        if not buckets or buckets[-1][0] != start:
            buckets.append([start, 0, 0, 0])
        return buckets[-1]

    def add(self, now: float, failed: bool, slow: bool) -> None:
        bucket = self._current(now)
        bucket[1] += 1
        bucket[2] += failed
        bucket[3] += slow

    def totals(self, now: float) -> tuple[int, int, int]:
        self._current(now)
        calls = failures = slow = 0
        for _, c, f, s in self._buckets:
            calls += int(c)
            failures += int(f)
            slow += int(s)
        return calls, failures, slow

    def reset(self) -> None:
        self._buckets.clear()
