"""Token bucket: ``rate`` tokens a second up to ``burst``; a call takes one or waits for it.

Pure: ``now`` is passed in. ``try_acquire`` answers at once and, when it refuses, says how long
until a token is there (the retry-after hint a RESOURCE_EXHAUSTED answer carries).
"""

from __future__ import annotations


class TokenBucket:
    __slots__ = ("_stamp", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got rate={rate}, burst={burst}")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = now

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now

    def try_acquire(self, now: float, tokens: float = 1.0) -> tuple[bool, float]:
        """(allowed, retry_after_seconds). Never blocks; refusals cost nothing."""
        if tokens > self.burst:
            raise ValueError(f"asked for {tokens} tokens; the bucket holds at most {self.burst}")
        self._refill(now)
        if self._tokens >= tokens:
            self._tokens -= tokens
            return True, 0.0
        return False, (tokens - self._tokens) / self.rate

    def available(self, now: float) -> float:
        self._refill(now)
        return self._tokens
