"""Service discovery: instances, the registrar/discovery interfaces, and backends chosen by URL.

Which backend a URL opens is the scheme table's business (``backends``); this package names none
of the backends above it.
"""

from __future__ import annotations

from meshkit.discovery.backends import ENTRY_POINT_GROUP, RegistryURL, open_registry, register_backend, schemes
from meshkit.discovery.instance import Instance
from meshkit.discovery.memory import MemoryRegistry
from meshkit.discovery.registry import Discovery, Registrar, Registry, Watcher

__all__ = [
    "ENTRY_POINT_GROUP",
    "Discovery",
    "Instance",
    "MemoryRegistry",
    "Registrar",
    "Registry",
    "RegistryURL",
    "Watcher",
    "open_registry",
    "register_backend",
    "schemes",
]
