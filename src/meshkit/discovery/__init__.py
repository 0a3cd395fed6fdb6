"""Service discovery: instances, the registry interface, and backends chosen by URL."""

from __future__ import annotations

import importlib
from urllib.parse import parse_qs, urlsplit

from meshkit.discovery.instance import Instance
from meshkit.discovery.memory import MemoryRegistry
from meshkit.discovery.registry import Registry, Watcher

SCHEMES = ("memory", "meshkit", "etcd", "zk")


def open_registry(url: str) -> Registry:
    """The registry a URL names: ``memory://[name]``, ``meshkit://host:port[,host:port]`` (the
    built-in registry server), ``etcd://h1:2379,h2:2379[/prefix]``, ``zk://h1:2181,h2:2181[/prefix]``.
    ``?ttl=SECONDS`` sets the lease TTL (the session timeout for ZooKeeper)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    if parts.scheme == "memory":
        return MemoryRegistry(parts.netloc + parts.path)
    if parts.scheme == "meshkit":
        # The built-in registry's client speaks meshkit RPC, a layer above this one: load it by
        # name (a plugin, as a third-party backend would be) rather than import it here.
        backend = importlib.import_module("meshkit.registry.backend")
        ttl = float(query["ttl"][0]) if "ttl" in query else backend.DEFAULT_TTL
        return backend.BuiltinRegistry(parts.netloc, ttl=ttl)  # type: ignore[no-any-return]
    if parts.scheme == "etcd":
        from meshkit.discovery.etcd import DEFAULT_PREFIX, DEFAULT_TTL, EtcdRegistry

        ttl = int(float(query["ttl"][0])) if "ttl" in query else DEFAULT_TTL
        return EtcdRegistry(parts.netloc, prefix=parts.path or DEFAULT_PREFIX, ttl=ttl)
    if parts.scheme == "zk":
        from meshkit.discovery.zookeeper import DEFAULT_PREFIX as ZK_PREFIX
        from meshkit.discovery.zookeeper import DEFAULT_SESSION_TIMEOUT, ZooKeeperRegistry

        timeout = float(query["ttl"][0]) if "ttl" in query else DEFAULT_SESSION_TIMEOUT
        return ZooKeeperRegistry(parts.netloc, prefix=parts.path or ZK_PREFIX, session_timeout=timeout)
    raise ValueError(f"unknown registry URL {url!r}; expected one of: {', '.join(s + '://' for s in SCHEMES)}")


__all__ = ["Instance", "MemoryRegistry", "Registry", "Watcher", "open_registry"]
