"""An instance of a service as registries store it and clients see it."""

from __future__ import annotations

import time
import uuid

import msgspec


class Instance(msgspec.Struct, frozen=True, kw_only=True):
    """One running copy of a service. ``id`` is unique per process and service; ``weight`` is its
    relative capacity (balancers read it); ``healthy`` False keeps it listed but out of rotation."""

    service: str
    host: str
    port: int
    id: str = msgspec.field(default_factory=lambda: uuid.uuid4().hex[:16])
    weight: int = 100
    zone: str = ""
    version: str = ""
    started_at: float = msgspec.field(default_factory=time.time)
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    healthy: bool = True

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def key(self) -> str:
        """What balancers hash and track (Node protocol)."""
        return self.id
