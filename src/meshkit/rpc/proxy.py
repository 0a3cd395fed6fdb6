"""Typed proxies: ``client.proxy(Greeter)`` stands in for the service class on the caller's side.

Calling a proxy method only builds the call; awaiting it sends it (through the client's middleware,
or straight to the channel when there is none).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from meshkit.balance import NAMES as BALANCERS
from meshkit.errors import RpcError, StatusCode
from meshkit.protocol.metadata import MetadataValue
from meshkit.rpc.options import UNSET, CallOptions
from meshkit.rpc.service import MethodSpec, Service, method_specs, service_name
from meshkit.rpc.stream_call import StreamCall

if TYPE_CHECKING:
    from meshkit.rpc.client import Client

_UNSET = UNSET


class _BoundMethod:
    """One method of a proxy. Calling it is the first step of every call, so it keeps what the
    call needs at hand and, without client middleware, goes straight to the transmit path."""

    __slots__ = (
        "_args_type",
        "_bare",
        "_client",
        "_extra",
        "_fallback",
        "_opts",
        "_qualname",
        "_spec",
        "_streaming",
        "_timeout",
        "_unary",
    )

    def __init__(self, client: Client, spec: MethodSpec, opts: CallOptions) -> None:
        self._client = client
        self._unary = client.channel.unary
        self._spec = spec
        self._args_type = spec.signature.args_type
        self._qualname = spec.qualname
        self._streaming = spec.streaming
        self._opts = opts
        self._bare = not client._middleware
        self._extra = opts.metadata or None
        self._timeout = opts.timeout
        self._fallback = opts.fallbacks.get(spec.attr) if opts.fallbacks else None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Only builds the call: nothing is checked, spent or sent until it is awaited, so that
        # ``gather(*(p.m(i) for i in ...), return_exceptions=True)`` gets every refusal as a
        # result and no limiter token is taken for a call that is never awaited.
        try:
            struct = self._args_type(*args, **kwargs)
        except TypeError as exc:
            return _refused(RpcError(StatusCode.INVALID_ARGUMENT, f"{self._qualname}: {exc}", not_processed=True))
        if self._streaming:
            return StreamCall(self._client, self._spec, struct, self._opts)
        if self._fallback is not None:
            return self._client._degradable(self._spec, struct, self._opts, self._fallback)
        if self._bare:
            return self._unary(self._spec, struct, self._opts, self._extra, self._timeout, None)
        return self._client._invoke_chain(self._spec, struct, self._opts)

    def __repr__(self) -> str:
        return f"<remote method {self._qualname}>"


async def _refused(error: RpcError) -> Any:
    """A call that fails as soon as it is awaited (its arguments could not even be bound)."""
    raise error


class Proxy:
    """Stands in for a service class on the client; build one with ``client.proxy(Service)``."""

    def __init__(self, client: Client, service: type[Service], opts: CallOptions) -> None:
        self._client = client
        self._service = service
        self._opts = opts
        self._name = service_name(service)
        for spec in method_specs(service).values():
            object.__setattr__(self, spec.attr, _BoundMethod(client, spec, opts))

    def with_options(
        self,
        *,
        timeout: float | None = _UNSET,
        metadata: Mapping[str, MetadataValue] | None = None,
        compression: bool | None = None,
        json: bool | None = None,
        hash_key: str | None = None,
        balancer: str | None = None,
    ) -> Proxy:
        """A proxy whose calls use these options; the original is unchanged."""
        opts = self._client._options(self._opts, timeout, metadata, compression, json)
        if hash_key is not None:
            opts = msgspec.structs.replace(opts, hash_key=hash_key)
        if balancer is not None:
            if balancer not in BALANCERS:
                raise ValueError(f"unknown balancer {balancer!r}; choose one of: {', '.join(BALANCERS)}")
            opts = msgspec.structs.replace(opts, balancer=balancer)
        return Proxy(self._client, self._service, opts)

    def with_fallback(self, **fallbacks: Callable[..., Any]) -> Proxy:
        """A proxy whose named methods answer with a local fallback (a function taking the same
        parameters, sync or async) when the call is refused unprocessed (breaker open, shed,
        limited, no instance) or the method is switched off in this process:
        ``proxy.with_fallback(reserve=lambda item, qty: Reservation(item, 0, "deferred"))``."""
        specs = {spec.attr: spec for spec in method_specs(self._service).values()}
        for attr, fn in fallbacks.items():
            spec = specs.get(attr)
            if spec is None:
                raise ValueError(f"{self._name} has no method {attr!r}; it has: {', '.join(sorted(specs))}")
            if spec.streaming:
                raise ValueError(f"{spec.qualname} is a stream; fallbacks are for unary methods")
            if not callable(fn):
                raise TypeError(f"fallback for {attr!r} must be callable, got {fn!r}")
        opts = msgspec.structs.replace(self._opts, fallbacks={**(self._opts.fallbacks or {}), **fallbacks})
        return Proxy(self._client, self._service, opts)

    def __repr__(self) -> str:
        return f"<meshkit proxy for {self._name}>"
