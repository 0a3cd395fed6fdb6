"""Reconnect backoff, gRPC's connection-backoff schedule: 1 s, then x1.6 per failure, +-20 %
jitter, capped at 120 s. Pure: the random source is injected."""

from __future__ import annotations

import random as _random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    initial: float = 1.0
    multiplier: float = 1.6
    jitter: float = 0.2
    maximum: float = 120.0

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.multiplier < 1 or not 0 <= self.jitter < 1 or self.maximum < self.initial:
            raise ValueError(f"invalid backoff policy {self}")


class Backoff:
    """Delay before the next attempt after ``failures`` consecutive failures."""

    __slots__ = ("_current", "_policy", "_random", "failures")

    def __init__(self, policy: BackoffPolicy | None = None, rng: _random.Random | None = None) -> None:
        self._policy = policy or BackoffPolicy()
        self._random = rng or _random.Random()
        self._current = self._policy.initial
        self.failures = 0

    def next_delay(self) -> float:
        """Record a failure and return how long to wait before trying again."""
        p = self._policy
        base = self._current
        self._current = min(self._current * p.multiplier, p.maximum)
        self.failures += 1
        return base * (1 + self._random.uniform(-p.jitter, p.jitter))

    def reset(self) -> None:
        self._current = self._policy.initial
        self.failures = 0
