"""The hooks governance plugs into: what a Server and a Client use of a policy, and where the
process's policy loader and breaker status come from.

Governance (``meshkit.policy``) sits above rpc, so rpc cannot name ``Policy``. It names these
protocols instead, which list exactly what the server side (server.py, dispatch.py, admin.py)
and the client side (client.py, channel.py) touch; ``Policy`` satisfies both structurally.
Everything a string or a process-wide lookup needs (``Server(policy="policy.toml")``, the admin
service's breaker status) goes through a registry that ``meshkit.policy`` fills when it is
imported, and ``import meshkit`` imports it. Members are read-only properties so an
implementation may keep narrower types (``AdaptiveConcurrency`` for ``shedder``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from meshkit.rpc.switches import Switches

__all__ = [
    "ClientGovernance",
    "PolicyLoader",
    "ServerGovernance",
    "Shedder",
    "load_policy",
    "process_breakers",
    "register_breaker_status",
    "register_policy_loader",
]


class Shedder(Protocol):
    """The adaptive concurrency limit as the REQUEST path reads it: refuse a call before decoding
    it when ``in_flight >= limit`` and the wait queue is full."""

    @property
    def in_flight(self) -> int: ...

    @property
    def limit(self) -> float: ...

    def queue_full(self) -> bool: ...

    def refuse(self) -> None: ...


class SwitchConfig(Protocol):
    """The part of a policy's config a Server reads: the switches its file turns on or off."""

    @property
    def switches(self) -> Mapping[str, bool]: ...


class ServerGovernance(Protocol):
    """What a Server uses of its ``policy``."""

    @property
    def config(self) -> SwitchConfig: ...

    @property
    def switches(self) -> Switches: ...

    @property
    def shedder(self) -> Shedder | None: ...

    def server_middleware(self) -> Callable[[Any], Any]:
        """The guard appended to the server's middleware chain (limits, bulkheads, fallbacks)."""
        ...

    def shed_refusal(self, qualname: str) -> bytes:
        """The encoded ERROR body of a call the shedder refused (counted by the policy)."""
        ...

    def snapshot(self) -> dict[str, Any]:
        """The state the admin service's ``status`` shows."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class ClientGovernance(Protocol):
    """What a Client (and its channel) uses of its ``policy``."""

    @property
    def switches(self) -> Switches: ...

    def client_middleware(self) -> Callable[[Any], Any]:
        """The guard appended to the client's middleware chain (limits, breakers, retries)."""
        ...

    def instance_breakers(self, service: str) -> Callable[[str, str], Any] | None:
        """A factory of per-instance breakers for ``service`` (key, address), or None."""
        ...


#: Makes a policy of a policy file's path (or of a configuration URL); a Policy is both a
#: Server's and a Client's governance.
PolicyLoader = Callable[[str], Any]

_loader: PolicyLoader | None = None
_url_loaders: dict[str, PolicyLoader] = {}
_breaker_status: Callable[[], dict[str, str]] | None = None


def register_policy_loader(loader: PolicyLoader, *, schemes: tuple[str, ...] | list[str] = ()) -> None:
    """Set what ``policy="path.toml"`` means (``meshkit.policy`` registers ``Policy.from_file``)
    or, with ``schemes``, what ``policy="scheme://…"`` means for those schemes (``"*"``: for
    any scheme no other loader claims; ``meshkit`` registers its live policies so). The last
    registration wins, so a process can swap in its own."""
    global _loader
    if schemes:
        for scheme in schemes:
            _url_loaders[scheme] = loader
    else:
        _loader = loader


def load_policy(path: str) -> Any:
    """The policy of the file ``path`` (or of the configuration URL ``scheme://…``), made by the
    registered loader."""
    scheme, sep, _ = path.partition("://")
    if sep and scheme.isidentifier():
        url_loader = _url_loaders.get(scheme) or _url_loaders.get("*")  # "*": any scheme, its loader checks
        if url_loader is None:
            known = ", ".join(f"{s}://" for s in sorted(_url_loaders)) or "none (import meshkit.config)"
            raise ValueError(f"policy={path!r}: no live policy for {scheme}:// (known: {known})")
        return url_loader(path)
    if _loader is None:
        raise RuntimeError(
            f"policy={path!r} needs a policy loader, and none is registered: import meshkit.policy "
            "(import meshkit does) or pass a Policy object"
        )
    return _loader(path)


def register_breaker_status(status: Callable[[], dict[str, str]]) -> None:
    """Set where the admin service reads the state of every breaker of this process from
    (``meshkit.policy`` registers its ``process_breakers``)."""
    global _breaker_status
    _breaker_status = status


def process_breakers() -> dict[str, str]:
    """The state of every breaker in this process, by name; empty while no governance is loaded
    (no policy, so no breakers)."""
    return _breaker_status() if _breaker_status is not None else {}
