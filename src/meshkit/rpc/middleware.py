"""Middleware: a function from handler to handler, folded in one place.

A handler takes a :class:`Call` and returns the result (or raises :class:`~meshkit.RpcError`).
Server and client chains have the same shape; on the server the innermost handler runs the method,
on the client it sends the request. ``Server(middleware=[...])`` / ``Client(middleware=[...])``
replace the default chain; the first middleware in the list is the outermost.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from meshkit.protocol.metadata import Metadata
from meshkit.rpc.service import MethodSpec


class Call:
    """One call as middleware sees it.

    ``args`` is the arguments Struct (fields named as the method's parameters); ``metadata`` is the
    request metadata (on the client, middleware may add keys before it is sent); ``peer`` is the
    other side's address (on the client, filled in once a connection is chosen); ``timeout`` is the
    time budget in seconds or None.

    Resilience policies use three more: ``fallback`` (server: the method's ``@rpc(fallback=…)``,
    a function of ``args``, or None), ``deadline`` (client: the absolute deadline on the loop's
    clock, so retries never extend it) and ``avoid`` (client: an address a retry should not
    be sent to again, when there is another).

    ``trace`` is the binary W3C trace context (25 bytes: trace id, parent span id, flags) the
    call came with (server) or is sent with (client), set by the tracing middleware; None for
    none. It travels outside the metadata map (protocol.md, the TRACE flag).
    """

    __slots__ = (
        "args",
        "avoid",
        "deadline",
        "fallback",
        "metadata",
        "options",
        "peer",
        "spec",
        "stream",
        "timeout",
        "trace",
    )

    def __init__(self, spec: MethodSpec, args: Any, metadata: Metadata, peer: str, timeout: float | None) -> None:
        self.spec = spec
        self.args = args
        self.metadata = metadata
        self.peer = peer
        self.timeout = timeout
        self.stream: Any = None  # server streams: where the terminal handler sends messages
        self.options: Any = None  # client: the call options the terminal handler needs
        self.fallback: Any = None
        self.deadline: float | None = None
        self.avoid: str | None = None
        self.trace: bytes | None = None

    @property
    def service(self) -> str:
        return self.spec.service

    @property
    def method(self) -> str:
        return self.spec.name

    def __repr__(self) -> str:
        return f"Call({self.spec.qualname}, peer={self.peer})"


Handler = Callable[[Call], Awaitable[Any]]
Middleware = Callable[[Handler], Handler]

#: Factories of middleware that layers above rpc put at the front of every default chain made
#: from then on (rpc cannot import them): observe registers tracing here, which answers None
#: until tracing is configured in the process.
_DEFAULT_FRONT: dict[str, list[Callable[[], Middleware | None]]] = {"server": [], "client": []}


def add_to_default_chains(side: str, factory: Callable[[], Middleware | None]) -> None:
    """Have ``factory()`` (None: nothing this time) lead the default chain of ``side``
    ("server" or "client") of every Server or Client made with ``middleware`` not given."""
    if side not in _DEFAULT_FRONT:
        raise ValueError(f"side is 'server' or 'client', not {side!r}")
    if factory not in _DEFAULT_FRONT[side]:
        _DEFAULT_FRONT[side].append(factory)


def default_front(side: str) -> list[Middleware]:
    """The middleware registered to lead ``side``'s default chain, as of now."""
    made = (factory() for factory in _DEFAULT_FRONT[side])
    return [mw for mw in made if mw is not None]


def chain(middleware: Sequence[Middleware], handler: Handler) -> Handler:
    """Wrap ``handler`` so that ``middleware[0]`` runs first."""
    for mw in reversed(middleware):
        handler = mw(handler)
    return handler
