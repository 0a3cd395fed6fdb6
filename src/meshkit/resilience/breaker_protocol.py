"""The one interface of a breaker: may this call go out, and how did it end.

Both breakers implement it (the classic three-state :class:`~meshkit.resilience.breaker.
CircuitBreaker` and the SRE :class:`~meshkit.resilience.adaptive_throttle.AdaptiveThrottle`), so
the middleware that puts a breaker on the call path is written once. Methods rather than a
completion callback returned by ``allow``: admission then costs no allocation per call, and the
middleware already holds the start time the latency is measured from.

``release`` is the fourth outcome, "no verdict" (resilience4j's ``releasePermission``): a call
let through that its caller cancelled, or that failed in a way that says nothing about the
backend. A half-open breaker must get its probe slot back, or it would wait for ever.
"""

from __future__ import annotations

from typing import Protocol


class Breaker(Protocol):
    def allow(self, now: float) -> bool:
        """May a call go out now? True admits it; its outcome must then be reported once."""
        ...

    def on_success(self, now: float, latency: float = 0.0) -> None: ...

    def on_failure(self, now: float, latency: float = 0.0) -> None: ...

    def release(self) -> None:
        """An admitted call ended without a verdict on the backend."""
        ...
