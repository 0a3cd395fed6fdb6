"""The built-in registry's state: TTL leases and eviction. Pure: time is a number.

Each registration gets a lease that the instance renews by heartbeat (every TTL/3 by default); a
lease not renewed for its TTL expires and its instance is evicted. This is an AP design, like
Eureka: every registry server answers from what it has, and a partitioned instance stays listed
until its lease runs out. When many leases go silent at once, :mod:`.preservation` may hold the
expired ones for a bounded time (self-preservation).
"""

from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field

from meshkit.discovery.instance import Instance
from meshkit.registry.preservation import SelfPreservation


@dataclass
class Lease:
    id: int
    instance: Instance
    ttl: float
    granted_at: float
    expires_at: float
    renewed_at: float


@dataclass
class RegistryState:
    preservation: SelfPreservation = field(default_factory=SelfPreservation)
    leases: dict[int, Lease] = field(default_factory=dict)
    revision: int = 0
    #: Counters a metrics endpoint exports.
    registrations: int = 0
    renewals: int = 0
    evictions: int = 0
    #: Expired leases kept by self-preservation at the last eviction round.
    held: int = 0
    _by_instance: dict[str, int] = field(default_factory=dict)
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
        lease = Lease(next(self._ids), instance, ttl, now, now + ttl, now)
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
        lease.renewed_at = now
        self.renewals += 1
        return True

    def deregister(self, instance_id: str) -> Instance | None:
        lease_id = self._by_instance.pop(instance_id, None)
        if lease_id is None:
            return None
        lease = self.leases.pop(lease_id)
        self.revision += 1
        return lease.instance

    @property
    def preserving(self) -> bool:
        """True while self-preservation holds expired leases (an episode is on)."""
        return self.preservation.active

    def evict(self, now: float) -> list[Instance]:
        """Remove expired leases, unless self-preservation holds them; returns the evicted."""
        expired = [lease for lease in self.leases.values() if lease.expires_at <= now]
        if self.preservation.hold(self.leases.values(), bool(expired), now):
            self.held = len(expired)
            return []
        self.held = 0
        if not expired:
            return []
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
