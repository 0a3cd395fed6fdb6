"""Scheme tables: which backend a URL's scheme opens, for every engine-backed part of meshkit.

Registries (``meshkit.registries``), locks (``meshkit.locks``) and elections (``meshkit.elections``)
are each one :class:`SchemeTable`. Backends are declared, not wired into an if-chain, so that the
part never has to know them all: meshkit's built-in registry speaks meshkit RPC, a layer above
discovery, and a third-party backend (Consul, Nacos, ...) lives in its own distribution. A
*factory* takes the parsed URL (:class:`BackendURL`) and returns the backend. Two ways to declare
one:

- in code, ``table.register("consul", open_consul)``, or lazily by reference,
  ``table.register("consul", "meshkit_consul:open_consul")`` (imported on first use);
- as an entry point in the table's group of a distribution's metadata; nothing has to import the
  distribution first::

      [project.entry-points."meshkit.registries"]
      consul = "meshkit_consul:open_consul"

**A scheme declared in code wins over an entry point of the same name.** The code is the program
that is running; installed metadata may be stale (an editable install of another checkout) and any
installed distribution can declare an entry point, which must not silently take ``etcd://`` over.
An application that does want another implementation of a scheme says so in code: ``register``
replaces an earlier declaration.

Entry points are read once, on the first lookup the code table cannot answer (or when the known
schemes are listed), so opening ``memory://`` never scans the installed distributions; an entry
point's module is imported only when its scheme is opened. This module sits at the bottom of the
layers (beside :mod:`meshkit.errors`): it imports nothing of meshkit.
"""

from __future__ import annotations

import importlib.metadata
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import SplitResult, parse_qs, urlsplit

log = logging.getLogger("meshkit.schemes")

T = TypeVar("T")

_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")  # RFC 3986, lower case: urlsplit lower-cases schemes


@dataclass(frozen=True, slots=True)
class BackendURL:
    """A backend URL, parsed once for its backend's factory."""

    url: str
    parts: SplitResult
    query: Mapping[str, list[str]]

    @classmethod
    def parse(cls, url: str) -> BackendURL:
        parts = urlsplit(url)
        return cls(url, parts, parse_qs(parts.query))

    @property
    def scheme(self) -> str:
        return self.parts.scheme

    @property
    def netloc(self) -> str:
        """``host:port[,host:port…]`` (or a ``memory://`` name), with any ``user:password@``."""
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
            raise ValueError(f"URL {self.url!r}: {name} must be a number, got {values[0]!r}") from None

    def text(self, name: str, default: str) -> str:
        """The query parameter ``name`` (the first one given), or ``default``."""
        values = self.query.get(name)
        return values[0] if values else default


class SchemeTable(Generic[T]):
    """The backends of one kind (``kind`` names it in errors) by URL scheme.

    ``members``: what a backend (an ``interface``) must have; checked when one is opened, so a third-party factory
    that returns something else fails there, by name, rather than on the first call that needs it.
    """

    def __init__(
        self,
        kind: str,
        group: str,
        declared: Mapping[str, Callable[[BackendURL], T] | str],
        members: tuple[str, ...] = (),
        interface: str = "",
    ) -> None:
        self.kind = kind
        #: What a backend is called in the error for one that lacks ``members``.
        self.interface = interface or f"{kind} backend"
        #: The entry point group distributions declare these backends in (name = scheme).
        self.group = group
        self.members = members
        self.declared: dict[str, Callable[[BackendURL], T] | str] = dict(declared)
        self.entry_points: dict[str, importlib.metadata.EntryPoint] | None = None  # read on first need

    def register(self, scheme: str, factory: Callable[[BackendURL], T] | str) -> None:
        """Declare the backend ``scheme://`` URLs open: a factory, or a ``"module:attr"``
        reference to one (imported when the scheme is first opened). Declaring again replaces."""
        if not _SCHEME.fullmatch(scheme):
            raise ValueError(f"{scheme!r} is not a URL scheme (lower case letters, digits, '+', '-', '.')")
        if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
            raise TypeError(f"a {self.kind} backend factory is a callable or 'module:attr', got {factory!r}")
        self.declared[scheme] = factory

    def _declared_entry_points(self) -> dict[str, importlib.metadata.EntryPoint]:
        if self.entry_points is None:
            found: dict[str, importlib.metadata.EntryPoint] = {}
            for ep in importlib.metadata.entry_points(group=self.group):
                first = found.setdefault(ep.name, ep)
                if first is not ep and first.value != ep.value:
                    # Two distributions claim one scheme: the one first on sys.path wins, as for imports.
                    log.warning(
                        "%s scheme %s:// is declared twice (%s, %s); using %s", self.kind, ep.name, first, ep, first
                    )
            self.entry_points = found
        return self.entry_points

    def schemes(self) -> list[str]:
        """Every scheme a URL of this kind can have here: declared in code or by an entry point."""
        return sorted({*self.declared, *self._declared_entry_points()})

    def factory(self, scheme: str) -> Callable[[BackendURL], T] | None:
        declared = self.declared.get(scheme)
        if declared is None:
            ep = self._declared_entry_points().get(scheme)
            if ep is None:
                return None
            where = f"entry point {ep.name} = {ep.value!r} ({self.group})"
        elif isinstance(declared, str):
            ep = importlib.metadata.EntryPoint(name=scheme, value=declared, group=self.group)
            where = repr(declared)
        else:
            return declared
        try:
            loaded = ep.load()
        except (ImportError, AttributeError) as exc:
            raise ImportError(f"the {self.kind} backend for {scheme}:// ({where}) could not be loaded: {exc}") from exc
        if not callable(loaded):
            raise TypeError(f"the {self.kind} backend for {scheme}:// ({where}) is {loaded!r}, not a factory")
        factory: Callable[[BackendURL], T] = loaded
        return factory

    def open(self, url: str) -> T:
        """The backend ``url`` names, made by the factory its scheme declares."""
        parsed = BackendURL.parse(url)
        factory = self.factory(parsed.scheme)
        if factory is None:
            known = ", ".join(f"{scheme}://" for scheme in self.schemes())
            raise ValueError(f"unknown {self.kind} URL {url!r}: no backend is declared for its scheme; known: {known}")
        backend: Any = factory(parsed)
        missing = [name for name in self.members if not hasattr(backend, name)]
        if missing:
            raise TypeError(
                f"the {self.kind} backend for {parsed.scheme}:// made {backend!r}, which is not a "
                f"{self.interface} (it lacks {', '.join(missing)})"
            )
        result: T = backend
        return result
