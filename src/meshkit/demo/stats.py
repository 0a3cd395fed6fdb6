"""Rolling call statistics for the demo's live view: calls/s, errors by code, p50/p99 latency.

Pure: callers pass the time, so the numbers are testable without a clock.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field


@dataclass
class _Second:
    ok: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    latencies: list[float] = field(default_factory=list)


class RollingStats:
    def __init__(self, window: int = 5, max_samples_per_second: int = 20_000) -> None:
        self.window = window
        self.max_samples = max_samples_per_second
        self._seconds: collections.OrderedDict[int, _Second] = collections.OrderedDict()
        self.total_ok = 0
        self.total_errors: collections.Counter[str] = collections.Counter()

    def _bucket(self, now: float) -> _Second:
        sec = int(now)
        bucket = self._seconds.get(sec)
        if bucket is None:
            bucket = self._seconds[sec] = _Second()
            while len(self._seconds) > self.window + 1:
                self._seconds.popitem(last=False)
        return bucket

    def record(self, now: float, latency: float, error: str | None = None) -> None:
        bucket = self._bucket(now)
        if error is None:
            bucket.ok += 1
            self.total_ok += 1
        else:
            bucket.errors[error] += 1
            self.total_errors[error] += 1
        if len(bucket.latencies) < self.max_samples:
            bucket.latencies.append(latency)

    def _complete(self, now: float) -> list[_Second]:
        """The full seconds of the window (the current, partial second is left out)."""
        current = int(now)
        return [b for s, b in self._seconds.items() if current - self.window <= s < current]

    def rate(self, now: float) -> float:
        """Calls per second (ok and failed) over the last complete second."""
        bucket = self._seconds.get(int(now) - 1)
        if bucket is None:
            return 0.0
        return float(bucket.ok + sum(bucket.errors.values()))

    def percentile(self, now: float, q: float) -> float | None:
        samples = sorted(x for b in self._complete(now) for x in b.latencies)
        if not samples:
            return None
        index = min(len(samples) - 1, max(0, round(q * (len(samples) - 1))))
        return samples[index]

    def error_rate(self, now: float) -> float:
        buckets = self._complete(now)
        total = sum(b.ok + sum(b.errors.values()) for b in buckets)
        errors = sum(sum(b.errors.values()) for b in buckets)
        return errors / total if total else 0.0
