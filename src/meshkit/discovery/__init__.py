"""Service discovery: instances, the registry interface, and backends chosen by URL."""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from meshkit.discovery.instance import Instance
from meshkit.discovery.memory import MemoryRegistry
from meshkit.discovery.registry import Registry, Watcher

SCHEMES = ("memory", "meshkit", "etcd")


def open_registry(url: str) -> Registry:
    """The registry a URL names: ``memory://[name]``, ``meshkit://host:port[,host:port]`` (the
    built-in registry server), ``etcd://h1:2379,h2:2379[/prefix]``. ZooKeeper (``zk://``) is still
    to come (issue #3)."""
    parts = urlsplit(url)
    if parts.scheme == "memory":
        return MemoryRegistry(parts.netloc + parts.path)
    if parts.scheme == "meshkit":
        # The built-in registry's client speaks meshkit RPC, a layer above this one: load it by
        # name (a plugin, as a third-party backend would be) rather than import it here.
        backend = importlib.import_module("meshkit.registry.backend")
        return backend.BuiltinRegistry(parts.netloc)  # type: ignore[no-any-return]
    if parts.scheme == "etcd":
        from meshkit.discovery.etcd import DEFAULT_PREFIX, EtcdRegistry

        return EtcdRegistry(parts.netloc, prefix=parts.path or DEFAULT_PREFIX)
    if parts.scheme in ("zk",):
        raise NotImplementedError(f"the {parts.scheme}:// registry backend is not built yet (issue #3)")
    raise ValueError(f"unknown registry URL {url!r}; expected one of: {', '.join(s + '://' for s in SCHEMES)}")


__all__ = ["Instance", "MemoryRegistry", "Registry", "Watcher", "open_registry"]
