"""Google SRE adaptive throttling: the client rejects locally with probability
``max(0, (requests - k * accepts) / (requests + 1))`` over a rolling window (k = 1.5).

While the backend accepts everything the probability is 0; as it starts refusing, the client
sheds the excess itself instead of sending calls that would fail anyway — and keeps sending
enough (k * accepts) to notice recovery. Pure: time and the random draw are passed in.
"""

from __future__ import annotations

import random as _random

from meshkit.resilience.window import RollingCounts


class AdaptiveThrottle:
    def __init__(self, k: float = 1.5, window: float = 120.0, buckets: int = 12) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self._counts = RollingCounts(window, buckets)  # calls = requests, failures = rejections

    def reject_probability(self, now: float) -> float:
        requests, rejected, _ = self._counts.totals(now)
        accepts = requests - rejected
        return max(0.0, (requests - self.k * accepts) / (requests + 1))

    def allow(self, now: float, rng: _random.Random) -> bool:
        if rng.random() < self.reject_probability(now):
            self._counts.add(now, failed=True, slow=False)  # counts as a request not accepted
            return False
        return True

    def on_result(self, now: float, accepted: bool) -> None:
        """Record a call that was sent: accepted, or refused/failed by the backend."""
        self._counts.add(now, failed=not accepted, slow=False)
