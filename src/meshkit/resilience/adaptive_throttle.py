"""Google SRE adaptive throttling: the client rejects locally with probability
``max(0, (requests - k * accepts) / (requests + 1))`` over a rolling window (k = 1.5).

While the backend accepts everything the probability is 0; as it starts refusing, the client
sheds the excess itself instead of sending calls that would fail anyway — and keeps sending
enough (k * accepts) to notice recovery. Pure: time and the random source are passed in.
Implements :class:`~meshkit.resilience.breaker_protocol.Breaker`: a failure is whatever the
caller counts as "not accepted" (refusals of an overloaded backend included).
"""

from __future__ import annotations

import random as _random

from meshkit.resilience.window import RollingCounts


class AdaptiveThrottle:
    __slots__ = ("_counts", "_rng", "k")

    def __init__(
        self, k: float = 1.5, window: float = 120.0, buckets: int = 12, rng: _random.Random | None = None
    ) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self._rng = rng or _random.Random()
        self._counts = RollingCounts(window, buckets)  # calls = requests, failures = rejections

    def reject_probability(self, now: float) -> float:
        requests, rejected, _ = self._counts.totals(now)
        accepts = requests - rejected
        return max(0.0, (requests - self.k * accepts) / (requests + 1))

    def allow(self, now: float, rng: _random.Random | None = None) -> bool:
        if (rng or self._rng).random() < self.reject_probability(now):
            self._counts.add(now, failed=True, slow=False)  # counts as a request not accepted
            return False
        return True

    def on_result(self, now: float, accepted: bool) -> None:
        """Record a call that was sent: accepted, or refused/failed by the backend."""
        self._counts.add(now, failed=not accepted, slow=False)

    def on_success(self, now: float, latency: float = 0.0) -> None:
        self._counts.add(now, failed=False, slow=False)

    def on_failure(self, now: float, latency: float = 0.0) -> None:
        self._counts.add(now, failed=True, slow=False)

    def release(self) -> None:
        """Nothing to give back: a call is counted when its outcome is, not when it is let out."""
