"""What every balancer shares: the node shape it needs, the pick result, the no-op completion.

Balancers are pure: no sockets, no loop, no clock or randomness they are not given. A pick returns
the node and a *done* callback the caller invokes once with the call's latency and outcome; the
balancers that learn (p2c, bounded-load consistent hashing) use it, the others return a shared
no-op that costs one call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from meshkit.errors import RpcError, StatusCode


class Node(Protocol):
    """The little a balancer needs to know about an endpoint."""

    @property
    def key(self) -> str:
        """Stable identity (instance id or address): hashing and bookkeeping use it."""
        ...

    @property
    def weight(self) -> int:
        """Relative capacity, > 0. Weight 0 takes no traffic."""
        ...


N = TypeVar("N", bound=Node)
#: done(latency_seconds, ok) — call once when the picked call ends.
Done = Callable[[float, bool], None]


def _noop(latency: float, ok: bool) -> None:
    return None


NOOP_DONE: Done = _noop


class Balancer(Protocol[N]):
    """``update`` replaces the node set; ``pick`` chooses one (``key`` matters to hashing only)."""

    def update(self, nodes: Sequence[N]) -> None: ...

    def pick(self, key: str | None = None) -> tuple[N, Done]: ...


def no_nodes() -> RpcError:
    return RpcError(StatusCode.UNAVAILABLE, "no instance to send the call to", not_processed=True)


def usable(nodes: Sequence[N]) -> list[N]:
    """Nodes with a positive weight; refuses negative weights loudly."""
    out = []
    for node in nodes:
        if node.weight < 0:
            raise ValueError(f"node {node.key} has negative weight {node.weight}")
        if node.weight > 0:
            out.append(node)
    return out
