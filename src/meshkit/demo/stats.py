"""Rolling call statistics for the demo's live view: calls/s, errors by code, p50/p99 latency.

A call ends in one of three outcomes: ok, an expected refusal (an answer the business gives on
purpose, such as "out of stock": counted by name, never as an error) or an error (something failed).
Pure: callers pass the time, so the numbers are testable without a clock.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field


@dataclass
class _Second:
    ok: int = 0
    expected: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    latencies: list[float] = field(default_factory=list)


class RollingStats:
    def __init__(self, window: int = 5, max_samples_per_second: int = 20_000) -> None:
        self.window = window
        self.max_samples = max_samples_per_second
        self._seconds: collections.OrderedDict[int, _Second] = collections.OrderedDict()
        self.total_ok = 0
        self.total_expected: collections.Counter[str] = collections.Counter()
        self.total_errors: collections.Counter[str] = collections.Counter()

    def _bucket(self, now: float) -> _Second:
        sec = int(now)
        bucket = self._seconds.get(sec)
        if bucket is None:
            bucket = self._seconds[sec] = _Second()
            while len(self._seconds) > self.window + 1:
                self._seconds.popitem(last=False)
        return bucket

    def record(self, now: float, latency: float, error: str | None = None, *, expected: str | None = None) -> None:
        """One finished call: ok, an ``expected`` refusal by name, or an ``error`` by code."""
        if error is not None and expected is not None:
            raise ValueError(f"a call is an error ({error}) or an expected refusal ({expected}), not both")
        bucket = self._bucket(now)
        if expected is not None:
            bucket.expected[expected] += 1
            self.total_expected[expected] += 1
        elif error is None:
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
        """Calls per second (every outcome) over the last complete second."""
        bucket = self._seconds.get(int(now) - 1)
        if bucket is None:
            return 0.0
        return float(_calls(bucket))

    def percentile(self, now: float, q: float) -> float | None:
        samples = sorted(x for b in self._complete(now) for x in b.latencies)
        if not samples:
            return None
        index = min(len(samples) - 1, max(0, round(q * (len(samples) - 1))))
        return samples[index]

    def error_rate(self, now: float) -> float:
        """Errors among all calls (expected refusals are answered calls, not errors)."""
        buckets = self._complete(now)
        total = sum(_calls(b) for b in buckets)
        errors = sum(sum(b.errors.values()) for b in buckets)
        return errors / total if total else 0.0


def _calls(bucket: _Second) -> int:
    return bucket.ok + sum(bucket.expected.values()) + sum(bucket.errors.values())
