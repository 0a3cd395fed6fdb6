"""``Client``: typed proxies and dynamic calls, over a :class:`~meshkit.rpc.channel.Channel`.

The client is the facade users hold: it keeps the configuration, the middleware chain (per
method, built once), client-side fallbacks and switches, and hands every call to its channel,
which owns endpoints, connections, deadlines and the attempt loop.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl as _ssl
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from typing import Any, TypeVar, cast

import msgspec

from meshkit.balance import NAMES as BALANCERS
from meshkit.discovery.registry import Registry
from meshkit.errors import RESENDABLE, RpcError
from meshkit.protocol.keepalive import KeepaliveConfig
from meshkit.protocol.limits import Limits
from meshkit.protocol.metadata import CALLER, DEADLINE, METHOD, SERVICE, MetadataValue
from meshkit.rpc.access_log import access_log
from meshkit.rpc.channel import MAX_TRANSPARENT_RETRIES, Channel, Connector
from meshkit.rpc.endpoints import Endpoints
from meshkit.rpc.events import CLIENTS
from meshkit.rpc.hooks import ClientGovernance, load_policy
from meshkit.rpc.middleware import Call, Handler, Middleware, chain, default_front
from meshkit.rpc.options import DEFAULT_TIMEOUT, UNSET, CallOptions, effective_deadline, parse_target
from meshkit.rpc.proxy import Proxy
from meshkit.rpc.service import MethodSpec, RpcOptions, Service
from meshkit.rpc.stream_call import StreamCall, open_stream
from meshkit.rpc.switches import Switches, process_switches
from meshkit.serde import Signature
from meshkit.transport.backoff import BackoffPolicy
from meshkit.transport.client import DEFAULT_STREAM_WINDOW
from meshkit.transport.pool import Peer

__all__ = [
    "DEFAULT_BALANCER",
    "DEFAULT_TIMEOUT",
    "MAX_TRANSPARENT_RETRIES",
    "Client",
    "Proxy",
    "StreamCall",
    "default_client_middleware",
    "effective_deadline",
    "parse_target",
]

S = TypeVar("S", bound=Service)
log = logging.getLogger("meshkit.client")
_UNSET = UNSET

_RESERVED = frozenset({SERVICE, METHOD, DEADLINE})
#: Power of two choices on latency and load: steers away from slow or busy instances by itself.
DEFAULT_BALANCER = "p2c"
CLIENT_KEEPALIVE = KeepaliveConfig()


def default_client_middleware() -> list[Middleware]:
    """The chain a Client gets when ``middleware`` is not given: tracing when the process has
    it configured (so a client made inside a traced handler continues the trace), then the
    client-side access log."""
    return [*default_front("client"), access_log("meshkit.access.client")]


class Client:
    """Calls services on the targets given (``"h1:7001,h2:7002"``), spreading calls round-robin
    over reachable peers until discovery and balancers take over.

    ``timeout`` is the default time budget of a unary call (10 s; None for none); a call made inside
    a handler never outlives the handler's own deadline. ``policy`` (a
    :class:`~meshkit.policy.Policy`, any :class:`~meshkit.rpc.hooks.ClientGovernance`, or a policy
    TOML path) adds client limits, breakers, retries and hedging after the middleware; ``caller``
    names this client to servers (per-caller limits).
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        registry: str | None = None,
        balancer: str = DEFAULT_BALANCER,
        zone: str = "",
        middleware: Sequence[Middleware] | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        metadata: Mapping[str, MetadataValue] | None = None,
        pool_size: int = 1,
        limits: Limits | None = None,
        keepalive: KeepaliveConfig | None = CLIENT_KEEPALIVE,
        ssl: _ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        connect_timeout: float = 5.0,
        backoff: BackoffPolicy | None = None,
        compression: bool = False,
        json: bool = False,
        stream_window: int = DEFAULT_STREAM_WINDOW,
        policy: ClientGovernance | str | None = None,
        caller: str | None = None,
        switches: Switches | None = None,
        connector: Connector | None = None,
    ) -> None:
        if (target is None) == (registry is None):
            raise ValueError("Client needs exactly one of target='host:port,...' or registry='scheme://...'")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be > 0 or None, got {timeout}")
        if not 1 <= stream_window <= 65536:
            raise ValueError(f"stream_window must be in 1..65536, got {stream_window}")
        if balancer not in BALANCERS:
            raise ValueError(f"unknown balancer {balancer!r}; choose one of: {', '.join(BALANCERS)}")
        self.limits = limits = limits or Limits()
        self.policy: ClientGovernance | None = load_policy(policy) if isinstance(policy, str) else policy
        #: Made here from a file or URL, so stopped here (a live policy's watch) at close.
        self._owns_policy = isinstance(policy, str)
        if switches is None:
            switches = self.policy.switches if self.policy is not None else process_switches()
        self.switches = switches
        policy_ = self.policy
        self.channel = Channel(
            target=target,
            registry=registry,
            balancer=balancer,
            zone=zone,
            limits=limits,
            keepalive=keepalive,
            ssl=ssl,
            server_hostname=server_hostname,
            connect_timeout=connect_timeout,
            backoff=backoff,
            pool_size=pool_size,
            stream_window=stream_window,
            breakers=policy_.instance_breakers if policy_ is not None else None,
            resend_refusals=policy_ is None,
            connector=connector,
        )
        self._middleware = list(default_client_middleware() if middleware is None else middleware)
        if self.policy is not None:
            self._middleware.append(self.policy.client_middleware())
            follow = getattr(self.policy, "on_instance_breakers", None)
            if follow is not None:  # a policy that can change live tells the channel
                follow(self.channel.breakers_changed)
        metadata = dict(metadata or {})
        if caller is not None:
            metadata[CALLER] = caller
        self._defaults = CallOptions(timeout, metadata, compression, json)
        self._check_metadata(self._defaults.metadata)
        self._handlers: dict[tuple[str, str], Handler] = {}
        CLIENTS.join(self)

    # -- public API ----------------------------------------------------------------------
    def proxy(self, service: type[S]) -> S:
        """A typed stand-in for ``service`` whose methods call the remote one."""
        return cast(S, Proxy(self, service, self._defaults))

    async def call(
        self,
        service: str,
        method: str,
        args: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = _UNSET,
        metadata: Mapping[str, MetadataValue] | None = None,
    ) -> Any:
        """A dynamic call by name, arguments as a mapping: no service class needed."""
        spec = _dynamic_spec(service, method)
        opts = self._options(self._defaults, timeout, metadata, None, None)
        return await self._invoke(spec, dict(args or {}), opts)

    def stream(
        self,
        service: str,
        method: str,
        args: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = _UNSET,
        metadata: Mapping[str, MetadataValue] | None = None,
    ) -> AsyncIterator[Any]:
        """A dynamic server-streaming call by name."""
        spec = _dynamic_spec(service, method, streaming=True)
        opts = self._options(self._defaults, timeout, metadata, None, None)
        return StreamCall(self, spec, dict(args or {}), opts)

    def endpoints(self) -> dict[str, Endpoints]:
        """The instance sets this client knows, by service (its static target under its text)."""
        return self.channel.endpoints()

    async def close(self) -> None:
        CLIENTS.leave(self)
        await self.channel.close()
        stop = getattr(self.policy, "stop", None) if self._owns_policy else None
        if stop is not None:
            await stop()

    # Views of the channel that tests and tools look at.
    @property
    def _services(self) -> dict[str, Endpoints]:
        return self.channel.services

    @property
    def _registry(self) -> Registry | None:
        return self.channel.registry

    @property
    def _stream_window(self) -> int:
        return self.channel.stream_window

    @property
    def _max_metadata(self) -> int:
        return self.channel._max_metadata

    def _first_peer(self) -> Peer:
        """The peer of the first static target (tests and benchmarks look inside it)."""
        static = self.channel.static
        assert static is not None
        self.channel.endpoints_now("")
        return static.nodes[0].peer

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- internals -------------------------------------------------------------------------
    @staticmethod
    def _check_metadata(md: Mapping[str, MetadataValue]) -> None:
        for key, value in md.items():
            if key in _RESERVED:
                raise ValueError(f"metadata key {key!r} is reserved for meshkit")
            if not isinstance(key, str) or not (value is None or isinstance(value, (str, int, float, bool))):
                raise TypeError(f"metadata {key!r}={value!r}: keys are str, values str/int/float/bool/None")

    def _options(
        self,
        base: CallOptions,
        timeout: float | None,
        metadata: Mapping[str, MetadataValue] | None,
        compression: bool | None,
        json: bool | None,
    ) -> CallOptions:
        if timeout is not _UNSET and timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be > 0 or None, got {timeout}")
        md = base.metadata
        if metadata:
            self._check_metadata(metadata)
            md = {**md, **metadata}
        return CallOptions(
            base.timeout if timeout is _UNSET else timeout,
            md,
            base.compression if compression is None else compression,
            base.json if json is None else json,
            base.hash_key,
            base.balancer,
            base.fallbacks,
        )

    def _handler(self, spec: MethodSpec) -> Handler:
        key = (spec.service, spec.name)
        handler = self._handlers.get(key)
        if handler is None:
            terminal = open_stream if spec.streaming else self._send
            handler = self._handlers[key] = chain(self._middleware, terminal)
        return handler

    def _invoke(self, spec: MethodSpec, args: Any, opts: CallOptions) -> Awaitable[Any]:
        if not self._middleware:
            return self.channel.unary(spec, args, opts, opts.metadata or None, opts.timeout, None)
        return self._handler(spec)(self._new_call(spec, args, opts))

    async def _invoke_chain(self, spec: MethodSpec, args: Any, opts: CallOptions) -> Any:
        """A call through the middleware, run when awaited: middleware may refuse the call
        (a switch, a limit) or spend something on it, which must not happen on creation."""
        return await self._handler(spec)(self._new_call(spec, args, opts))

    def _new_call(self, spec: MethodSpec, args: Any, opts: CallOptions) -> Call:
        """The Call the client middleware sees (its own copy of the metadata to add to)."""
        call = Call(spec, args, dict(opts.metadata) if opts.metadata else {}, "", opts.timeout)
        call.options = opts
        if self.policy is not None:  # retries measure what is left against this
            call.deadline = effective_deadline(asyncio.get_running_loop().time(), opts.timeout)
        return call

    async def _degradable(self, spec: MethodSpec, args: Any, opts: CallOptions, fallback: Any) -> Any:
        """A call with a client-side fallback: used when the method is switched off here, or the
        call was refused without being processed (breaker open, shed, limited, no instance)."""
        if spec.qualname not in self.switches.on:
            try:
                return await self._invoke(spec, args, opts)
            except RpcError as exc:
                if not (exc.not_processed and exc.code in RESENDABLE):
                    raise
                log.debug("%s: %s; answering with the fallback", spec.qualname, exc)
        value = fallback(**msgspec.structs.asdict(args))
        return await value if inspect.isawaitable(value) else value

    def _send(self, call: Call) -> Awaitable[Any]:
        """The innermost handler of the client's middleware chain (returns the transmit coroutine)."""
        return self.channel.unary(call.spec, call.args, call.options, call.metadata or None, call.timeout, call)


_dynamic_specs: dict[tuple[str, str, bool], MethodSpec] = {}


def _dynamic_spec(service: str, method: str, streaming: bool = False) -> MethodSpec:
    key = (service, method, streaming)
    spec = _dynamic_specs.get(key)
    if spec is None:
        any_decode = msgspec.msgpack.Decoder().decode
        any_json = msgspec.json.Decoder().decode
        sig = Signature(
            names=(),
            kwonly=(),
            args_type=msgspec.Struct,
            result_type=Any,
            streaming=streaming,
            decode_args_msgpack=any_decode,
            decode_args_json=any_json,
            decode_result_msgpack=any_decode,
            decode_result_json=any_json,
        )
        spec = _dynamic_specs[key] = MethodSpec(service, method, method, RpcOptions(), sig)
    return spec
