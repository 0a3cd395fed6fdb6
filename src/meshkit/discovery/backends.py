"""The scheme table: which registry backend a URL's scheme opens.

Backends are declared, not wired into an if-chain, so that this package never has to know them all:
meshkit's built-in registry (``meshkit://``) speaks meshkit RPC, a layer above this one, and a
third-party backend (Consul, Nacos, …) lives in its own distribution. A *factory* takes the parsed
URL (``RegistryURL``) and returns the backend. There are two ways to declare one:

- in code, ``register_backend("consul", open_consul)``, or lazily by reference,
  ``register_backend("consul", "meshkit_consul:open_consul")`` (imported on first use);
- as an entry point in the ``meshkit.registries`` group of a distribution's metadata; nothing has
  to import the distribution first::

      [project.entry-points."meshkit.registries"]
      consul = "meshkit_consul:open_consul"

meshkit declares its own backends both ways: in code (below for ``memory``, ``etcd`` and ``zk``;
the built-in registry's package declares ``meshkit`` itself, and ``import meshkit`` imports that
package), so that a source checkout works whatever metadata is installed, and as entry points in
pyproject.toml.

**A scheme declared in code wins over an entry point of the same name.** The code is the program
that is running; installed metadata may be stale (an editable install of another checkout) and any
installed distribution can declare an entry point, which must not silently take ``etcd://`` over.
An application that does want another implementation of a scheme says so in code:
``register_backend`` replaces an earlier declaration.

Entry points are read once, on the first lookup the code table cannot answer (or when the known
schemes are listed), so opening ``memory://`` never scans the installed distributions; an entry
point's module is imported only when its scheme is opened.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import SplitResult, parse_qs, urlsplit

from meshkit.discovery.registry import Registry

log = logging.getLogger("meshkit.discovery")

#: The entry point group a distribution declares its registry backends in (name = scheme).
ENTRY_POINT_GROUP = "meshkit.registries"


@dataclass(frozen=True, slots=True)
class RegistryURL:
    """A registry URL, parsed once for its backend's factory."""

    url: str
    parts: SplitResult
    query: Mapping[str, list[str]]

    @classmethod
    def parse(cls, url: str) -> RegistryURL:
        parts = urlsplit(url)
        return cls(url, parts, parse_qs(parts.query))

    @property
    def scheme(self) -> str:
        return self.parts.scheme

    @property
    def netloc(self) -> str:
        """``host:port[,host:port…]`` (or a ``memory://`` name)."""
        return self.parts.netloc

    @property
    def path(self) -> str:
        return self.parts.path

    def number(self, name: str, default: float) -> float:
        """The query parameter ``name`` as a number (the first one given), or ``default``."""
        values = self.query.get(name)
        if not values:
            return default
        try:
            return float(values[0])
        except ValueError:
            raise ValueError(f"registry URL {self.url!r}: {name} must be a number, got {values[0]!r}") from None


#: Makes a backend from its URL. Declared in code as the callable or as a ``"module:attr"`` reference.
BackendFactory = Callable[[RegistryURL], Registry]

_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")  # RFC 3986, lower case: urlsplit lower-cases schemes
#: Members a backend must have; checked when one is opened, so a third-party factory that returns
#: something else fails there, by name, rather than on the first call that needs the member.
_MEMBERS = tuple(sorted(name for name in dir(Registry) if not name.startswith("_")))

_declared: dict[str, BackendFactory | str] = {
    "memory": "meshkit.discovery.memory:open_memory",
    "etcd": "meshkit.discovery.etcd:open_etcd",
    "zk": "meshkit.discovery.zookeeper:open_zookeeper",
}
_entry_points: dict[str, importlib.metadata.EntryPoint] | None = None  # read once, on first need


def register_backend(scheme: str, factory: BackendFactory | str) -> None:
    """Declare the backend ``scheme://`` URLs open: a factory, or a ``"module:attr"`` reference to
    one (imported when the scheme is first opened). Declaring a scheme again replaces it."""
    if not _SCHEME.fullmatch(scheme):
        raise ValueError(f"{scheme!r} is not a URL scheme (lower case letters, digits, '+', '-', '.')")
    if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
        raise TypeError(f"a registry backend factory is a callable or 'module:attr', got {factory!r}")
    _declared[scheme] = factory


def _declared_entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    global _entry_points
    if _entry_points is None:
        found: dict[str, importlib.metadata.EntryPoint] = {}
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            first = found.setdefault(ep.name, ep)
            if first is not ep and first.value != ep.value:
                # Two distributions claim one scheme: the one first on sys.path wins, as for imports.
                log.warning("registry scheme %s:// is declared twice (%s, %s); using %s", ep.name, first, ep, first)
        _entry_points = found
    return _entry_points


def schemes() -> list[str]:
    """Every scheme a registry URL can have here: declared in code or by an entry point."""
    return sorted({*_declared, *_declared_entry_points()})


def _factory(scheme: str) -> BackendFactory | None:
    declared = _declared.get(scheme)
    if declared is None:
        ep = _declared_entry_points().get(scheme)
        if ep is None:
            return None
        where = f"entry point {ep.name} = {ep.value!r} ({ENTRY_POINT_GROUP})"
    elif isinstance(declared, str):
        ep = importlib.metadata.EntryPoint(name=scheme, value=declared, group=ENTRY_POINT_GROUP)
        where = repr(declared)
    else:
        return declared
    try:
        loaded = ep.load()
    except (ImportError, AttributeError) as exc:
        raise ImportError(f"the registry backend for {scheme}:// ({where}) could not be loaded: {exc}") from exc
    if not callable(loaded):
        raise TypeError(f"the registry backend for {scheme}:// ({where}) is {loaded!r}, not a factory")
    factory: BackendFactory = loaded
    return factory


def open_registry(url: str) -> Registry:
    """The registry a URL names, made by the backend its scheme declares. meshkit's own:
    ``memory://[name]``, ``meshkit://host:port[,host:port]`` (the built-in registry server),
    ``etcd://h1:2379,h2:2379[/prefix]``, ``zk://h1:2181,h2:2181[/prefix]``; ``?ttl=SECONDS``
    sets the lease TTL (the session timeout for ZooKeeper)."""
    parsed = RegistryURL.parse(url)
    factory = _factory(parsed.scheme)
    if factory is None:
        known = ", ".join(f"{scheme}://" for scheme in schemes())
        raise ValueError(f"unknown registry URL {url!r}: no backend is declared for its scheme; known: {known}")
    backend = factory(parsed)
    missing = [name for name in _MEMBERS if not hasattr(backend, name)]
    if missing:
        raise TypeError(
            f"the registry backend for {parsed.scheme}:// made {backend!r}, which is not a Registry "
            f"(it lacks {', '.join(missing)})"
        )
    return backend
