"""When a holder renews its lease and when it must consider the lease gone: pure, clock given.

The engine starts a lease's TTL when it *handles* a grant or a renewal, which is after the holder
*sent* it, so ``sent + ttl`` is a time by which the engine's lease has not yet run out on the
engine's clock. Clocks also run at slightly different rates, so the holder's view ends a little
earlier still (:data:`DRIFT` of the TTL, Redlock's allowance). Past that point the holder knows
nothing and must stop: its body is cancelled and ``held.lost`` set. Renewal is asked at a third of
the TTL (Redisson's watchdog), so two failed renewals in a row still leave time for a third; a
renewal that fails is retried at :data:`RETRY_FRACTION` of the TTL until the lease runs out.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Renew after this fraction of the TTL.
RENEW_FRACTION = 1 / 3
#: After a failed renewal (engine unreachable), try again after this fraction of the TTL.
RETRY_FRACTION = 1 / 10
#: The part of the TTL the holder's view gives up for clock drift between holder and engine.
DRIFT = 0.01


@dataclass(slots=True)
class LeaseSchedule:
    """One grant's lease, as its holder sees it. ``granted_at``: when the grant was *sent*."""

    ttl: float
    granted_at: float
    #: Until when the holder may act on the lease (its own clock).
    valid_until: float = 0.0
    #: When the watchdog asks the engine next.
    next_attempt: float = 0.0
    #: Failed renewals since the last one that worked.
    failures: int = 0

    def __post_init__(self) -> None:
        self.renewed(self.granted_at)

    def renewed(self, sent_at: float) -> None:
        """A renewal sent at ``sent_at`` succeeded."""
        self.valid_until = sent_at + self.ttl * (1 - DRIFT)
        self.next_attempt = sent_at + self.ttl * RENEW_FRACTION
        self.failures = 0

    def failed(self, now: float) -> None:
        """A renewal could not be made (the engine did not answer in time, or not at all)."""
        self.failures += 1
        self.next_attempt = min(now + self.ttl * RETRY_FRACTION, self.valid_until)

    def expired(self, now: float) -> bool:
        """The holder may no longer act on the lease."""
        return now >= self.valid_until

    def time_left(self, now: float) -> float:
        """How long a renewal may take before it is too late to matter."""
        return max(0.0, self.valid_until - now)
