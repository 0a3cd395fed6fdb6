"""Service discovery: instances, the registry interface, and backends chosen by URL."""

from __future__ import annotations

from urllib.parse import urlsplit

from meshkit.discovery.instance import Instance
from meshkit.discovery.memory import MemoryRegistry
from meshkit.discovery.registry import Registry, Watcher

SCHEMES = ("memory",)


def open_registry(url: str) -> Registry:
    """The registry a URL names: ``memory://[name]`` today; the built-in server (``meshkit://``),
    etcd (``etcd://``) and ZooKeeper (``zk://``) backends are the rest of issue #3."""
    parts = urlsplit(url)
    if parts.scheme == "memory":
        return MemoryRegistry(parts.netloc + parts.path)
    if parts.scheme in ("meshkit", "etcd", "zk"):
        raise NotImplementedError(f"the {parts.scheme}:// registry backend is not built yet (issue #3)")
    raise ValueError(f"unknown registry URL {url!r}; expected one of: {', '.join(s + '://' for s in SCHEMES)}")


__all__ = ["Instance", "MemoryRegistry", "Registry", "Watcher", "open_registry"]
