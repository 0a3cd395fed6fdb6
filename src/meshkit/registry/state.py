"""The built-in registry's state: TTL leases, eviction, self-preservation. Pure: time is a number.

Each registration gets a lease that the instance renews by heartbeat (every TTL/3 by default); a
lease not renewed for its TTL expires and its instance is evicted. This is an AP design, like
Eureka: every registry server answers from what it has, and a partitioned instance stays listed
until its lease runs out.

Self-preservation (Eureka's): if the renewals seen over the last ``window`` seconds fall below 85 %
of what the live leases should have sent, the problem is more likely the network than every
instance dying at once, so eviction stops until renewals recover. A registry emptied by a network
blip would send every client to "no instance"; a stale entry only costs a failed call that the
client's retries and outlier ejection absorb. With fewer than ``min_leases`` leases the check is
off: one death among three is a death, not a partition.
"""

from __future__ import annotations

import collections
import itertools
import secrets
from dataclasses import dataclass, field

from meshkit.discovery.instance import Instance

RENEWAL_THRESHOLD = 0.85
DEFAULT_WINDOW = 60.0


@dataclass
class Lease:
    id: int
    instance: Instance
    ttl: float
    granted_at: float
    expires_at: float


@dataclass
class RegistryState:
    threshold: float = RENEWAL_THRESHOLD
    window: float = DEFAULT_WINDOW
    min_leases: int = 4
    leases: dict[int, Lease] = field(default_factory=dict)
    revision: int = 0
    #: Counters a metrics endpoint exports.
    registrations: int = 0
    renewals: int = 0
    evictions: int = 0
    preserving: bool = False
    _by_instance: dict[str, int] = field(default_factory=dict)
    _renewed: collections.deque[float] = field(default_factory=collections.deque)
    # Lease ids start at a random point: after a restart, a heartbeat for an old lease must come
    # back "unknown" rather than renew somebody else's new lease that happens to share its number.
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(secrets.randbits(40) << 12))

    def register(self, instance: Instance, ttl: float, now: float) -> int:
        """Lease ``instance`` for ``ttl`` seconds; re-registering the same instance id replaces it."""
        if ttl <= 0:
            raise ValueError(f"ttl must be > 0, got {ttl}")
        old = self._by_instance.pop(instance.id, None)
        if old is not None:
            self.leases.pop(old, None)
        lease = Lease(next(self._ids), instance, ttl, now, now + ttl)
        self.leases[lease.id] = lease
        self._by_instance[instance.id] = lease.id
        self.registrations += 1
        self.revision += 1
        return lease.id

    def renew(self, lease_id: int, now: float) -> bool:
        """Extend a lease; False if it is unknown (expired or evicted): the caller registers again."""
        lease = self.leases.get(lease_id)
        if lease is None:
            return False
        lease.expires_at = now + lease.ttl
        self.renewals += 1
        self._renewed.append(now)
        return True

    def deregister(self, instance_id: str) -> Instance | None:
        lease_id = self._by_instance.pop(instance_id, None)
        if lease_id is None:
            return None
        lease = self.leases.pop(lease_id)
        self.revision += 1
        return lease.instance

    def expected_renewals(self, now: float) -> float:
        """Renewals the live leases should have sent in the last window (each every TTL/3)."""
        total = 0.0
        for lease in self.leases.values():
            span = min(self.window, now - lease.granted_at)
            if span > 0:
                total += span / (lease.ttl / 3)
        return total

    def evict(self, now: float) -> list[Instance]:
        """Remove expired leases, unless self-preservation holds them; returns the evicted."""
        renewed = self._renewed
        while renewed and renewed[0] < now - self.window:
            renewed.popleft()
        expired = [lease for lease in self.leases.values() if lease.expires_at <= now]
        if not expired:
            self.preserving = False
            return []
        if len(self.leases) >= self.min_leases:
            expected = self.expected_renewals(now)
            self.preserving = expected > 0 and len(renewed) < self.threshold * expected
            if self.preserving:
                return []
        else:
            self.preserving = False
        for lease in expired:
            del self.leases[lease.id]
            self._by_instance.pop(lease.instance.id, None)
        self.evictions += len(expired)
        self.revision += 1
        return [lease.instance for lease in expired]

    def snapshot(self, service: str) -> list[Instance]:
        return sorted(
            (lease.instance for lease in self.leases.values() if lease.instance.service == service),
            key=lambda i: i.id,
        )

    def services(self) -> list[str]:
        return sorted({lease.instance.service for lease in self.leases.values()})
