"""Passive outlier ejection: take an instance out of rotation after consecutive failures.

Envoy's scheme: ``consecutive`` infrastructure failures in a row (not application errors) eject an
instance for ``base_ejection * times ejected`` seconds, capped at ``max_ejection``; at most
``max_ejected_percent`` of the instances (but always at least one) are out at once; and if fewer
than ``panic_threshold_percent`` of the instances are left in rotation, ejection is ignored
altogether, because sending to a doubtful instance beats sending nowhere. Pure: time is passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class _Health:
    failures: int = 0
    times_ejected: int = 0
    ejected_until: float = 0.0


@dataclass
class OutlierDetector:
    consecutive: int = 5
    base_ejection: float = 30.0
    max_ejection: float = 300.0
    max_ejected_percent: float = 10.0
    panic_threshold_percent: float = 50.0
    health: dict[str, _Health] = field(default_factory=dict)
    ejections: int = 0  # counter for metrics

    def update(self, keys: list[str]) -> None:
        self.health = {k: self.health.get(k) or _Health() for k in keys}

    def record(self, key: str, ok: bool, now: float) -> bool:
        """Count an outcome; True if it ejected ``key`` now."""
        h = self.health.get(key)
        if h is None:
            return False
        if ok:
            h.failures = 0
            return False
        h.failures += 1
        if h.failures < self.consecutive or h.ejected_until > now:
            return False
        allowed = max(1, math.floor(len(self.health) * self.max_ejected_percent / 100))
        if self.ejected_count(now) >= allowed:
            return False
        h.times_ejected += 1
        h.ejected_until = now + min(self.base_ejection * h.times_ejected, self.max_ejection)
        h.failures = 0
        self.ejections += 1
        return True

    def ejected_count(self, now: float) -> int:
        return sum(1 for h in self.health.values() if h.ejected_until > now)

    def is_ejected(self, key: str, now: float) -> bool:
        """Whether to keep ``key`` out of rotation now (never in panic mode)."""
        h = self.health.get(key)
        if h is None or h.ejected_until <= now:
            return False
        total = len(self.health)
        in_rotation = total - self.ejected_count(now)
        return in_rotation * 100 >= self.panic_threshold_percent * total
