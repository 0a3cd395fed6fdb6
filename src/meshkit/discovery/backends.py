"""The registry scheme table: which registry backend a URL's scheme opens.

One :class:`meshkit.schemes.SchemeTable` (read its docstring for how a backend is declared, in
code or by an entry point in the ``meshkit.registries`` group, and why code wins). meshkit
declares its own registry backends both ways: in code (below for ``memory``, ``etcd`` and ``zk``;
the built-in registry's package declares ``meshkit`` itself, and ``import meshkit`` imports that
package), so that a source checkout works whatever metadata is installed, and as entry points in
pyproject.toml.
"""

from __future__ import annotations

from meshkit.discovery.registry import Registry
from meshkit.schemes import BackendURL, SchemeTable

#: The entry point group a distribution declares its registry backends in (name = scheme).
ENTRY_POINT_GROUP = "meshkit.registries"

#: A registry URL, parsed once for its backend's factory (the URL type every scheme table uses).
RegistryURL = BackendURL

_table: SchemeTable[Registry] = SchemeTable(
    "registry",
    ENTRY_POINT_GROUP,
    {
        "memory": "meshkit.discovery.memory:open_memory",
        "etcd": "meshkit.discovery.etcd:open_etcd",
        "zk": "meshkit.discovery.zookeeper:open_zookeeper",
    },
    tuple(sorted(name for name in dir(Registry) if not name.startswith("_"))),
    "Registry",
)


def register_backend(scheme: str, factory: object) -> None:
    """Declare the backend ``scheme://`` URLs open: a factory taking a :class:`RegistryURL`, or a
    ``"module:attr"`` reference to one (imported when the scheme is first opened). Declaring a
    scheme again replaces it."""
    _table.register(scheme, factory)  # type: ignore[arg-type]


def schemes() -> list[str]:
    """Every scheme a registry URL can have here: declared in code or by an entry point."""
    return _table.schemes()


def open_registry(url: str) -> Registry:
    """The registry a URL names, made by the backend its scheme declares. meshkit's own:
    ``memory://[name]``, ``meshkit://host:port[,host:port]`` (the built-in registry server),
    ``etcd://h1:2379,h2:2379[/prefix]``, ``zk://h1:2181,h2:2181[/prefix]``; ``?ttl=SECONDS``
    sets the lease TTL (the session timeout for ZooKeeper)."""
    return _table.open(url)
