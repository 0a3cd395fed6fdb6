"""``Client``: typed proxies and dynamic calls over pooled, multiplexed connections."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import random
import ssl as _ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

import msgspec

from meshkit.balance import NAMES as BALANCERS
from meshkit.balance import NOOP_DONE
from meshkit.discovery import open_registry
from meshkit.discovery.registry import Registry
from meshkit.errors import INSTANCE_FAILURES, RESENDABLE, RpcError, StatusCode
from meshkit.policy import Policy, Switches, process_switches
from meshkit.protocol.compression import MIN_COMPRESS_SIZE, compress
from meshkit.protocol.frames import TRACE_CONTEXT_SIZE, Flags, Frame
from meshkit.protocol.keepalive import KeepaliveConfig
from meshkit.protocol.limits import Limits
from meshkit.protocol.metadata import CALLER, DEADLINE, METHOD, SERVICE, Metadata, MetadataValue
from meshkit.rpc.access_log import access_log
from meshkit.rpc.context import _current
from meshkit.rpc.endpoints import Endpoints, instance_entries, no_instances, watch_service
from meshkit.rpc.events import CLIENTS
from meshkit.rpc.middleware import Call, Handler, Middleware, chain, default_front
from meshkit.rpc.service import MethodSpec, RpcOptions, Service, method_specs, service_name
from meshkit.serde import Signature, json_encode, msgpack_encode
from meshkit.transport.backoff import Backoff, BackoffPolicy
from meshkit.transport.client import DEFAULT_STREAM_WINDOW, ClientConnection, StreamReceiver, connect
from meshkit.transport.pool import Peer

S = TypeVar("S", bound=Service)
log = logging.getLogger("meshkit.client")
_msgpack_encode = msgpack_encode

_RESERVED = frozenset({SERVICE, METHOD, DEADLINE})
_JSON = int(Flags.JSON)
_COMPRESSED = int(Flags.COMPRESSED)
_TRACE = int(Flags.TRACE)
#: A call that the server certainly never processed is re-sent at most this many times.
MAX_TRANSPARENT_RETRIES = 2
DEFAULT_TIMEOUT = 10.0
#: Power of two choices on latency and load: steers away from slow or busy instances by itself.
DEFAULT_BALANCER = "p2c"
CLIENT_KEEPALIVE = KeepaliveConfig()


class _Unset:
    pass


_UNSET: Any = _Unset()


def default_client_middleware() -> list[Middleware]:
    """The chain a Client gets when ``middleware`` is not given: tracing when the process has
    it configured (so a client made inside a traced handler continues the trace), then the
    client-side access log."""
    return [*default_front("client"), access_log("meshkit.access.client")]


def effective_deadline(now: float, timeout: float | None) -> float | None:
    """A call's deadline: its own budget, but never past the deadline of the call being handled
    (a call made inside a handler inherits what its caller has left)."""
    ctx = _current.get()
    inherited = ctx.deadline if ctx is not None else None
    if timeout is None:
        return inherited
    own = now + timeout
    return own if inherited is None or own < inherited else inherited


def parse_target(target: str) -> list[tuple[str, int]]:
    """``"h1:7001,h2:7002"`` -> [(h1, 7001), (h2, 7002)], with errors that say which part is wrong."""
    out: list[tuple[str, int]] = []
    for part in target.split(","):
        part = part.strip()
        if not part:
            continue
        host, sep, port = part.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bad target {part!r}: expected HOST:PORT")
        out.append((host.strip("[]"), int(port)))
    if not out:
        raise ValueError(f"target {target!r} names no HOST:PORT")
    return out


class _Options(msgspec.Struct, frozen=True):
    timeout: float | None
    metadata: dict[str, MetadataValue]
    compression: bool
    json: bool
    hash_key: str | None = None
    balancer: str | None = None  # per-call choice; None: the client's
    fallbacks: dict[str, Any] | None = None  # method attribute -> client-side fallback
    plain: bool = False  # msgpack, uncompressed: the fast path

    def __post_init__(self) -> None:
        msgspec.structs.force_setattr(self, "plain", not self.json and not self.compression)


class Client:
    """Calls services on the targets given (``"h1:7001,h2:7002"``), spreading calls round-robin
    over reachable peers until discovery and balancers take over.

    ``timeout`` is the default time budget of a unary call (10 s; None for none); a call made inside
    a handler never outlives the handler's own deadline. ``policy`` (a
    :class:`~meshkit.policy.Policy` or a policy TOML path) adds client limits, breakers, retries
    and hedging after the middleware; ``caller`` names this client to servers (per-caller limits).
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
        policy: Policy | str | None = None,
        caller: str | None = None,
        switches: Switches | None = None,
    ) -> None:
        if (target is None) == (registry is None):
            raise ValueError("Client needs exactly one of target='host:port,...' or registry='scheme://...'")
        if timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be > 0 or None, got {timeout}")
        if not 1 <= stream_window <= 65536:
            raise ValueError(f"stream_window must be in 1..65536, got {stream_window}")
        if balancer not in BALANCERS:
            raise ValueError(f"unknown balancer {balancer!r}; choose one of: {', '.join(BALANCERS)}")
        self.limits = limits or Limits()
        self._max_metadata = self.limits.max_metadata_size  # checked on every call: one attribute
        self._keepalive = keepalive
        self._ssl = ssl
        self._server_hostname = server_hostname
        self._connect_timeout = connect_timeout
        self._backoff_policy = backoff or BackoffPolicy()
        self._stream_window = stream_window
        self._pool_size = pool_size
        self._balancer = balancer
        self._zone = zone
        self._rng = random.Random()
        self._registry: Registry | None = None
        self._services: dict[str, Endpoints] = {}
        self._static: Endpoints | None = None
        self.policy = Policy.from_file(policy) if isinstance(policy, str) else policy
        if switches is None:
            switches = self.policy.switches if self.policy is not None else process_switches()
        self.switches = switches
        if target is not None:
            addresses = parse_target(target)
            self._static = Endpoints(target, balancer, self._make_peer, self._rng, breakers=self._breakers("*"))
            self._static.set_instances([(f"{h}:{p}", f"{h}:{p}", 1, None) for h, p in addresses])
        else:
            assert registry is not None
            self._registry = open_registry(registry)
        self._middleware = list(default_client_middleware() if middleware is None else middleware)
        if self.policy is not None:
            self._middleware.append(self.policy.client_middleware())
        metadata = dict(metadata or {})
        if caller is not None:
            metadata[CALLER] = caller
        self._defaults = _Options(timeout, metadata, compression, json)
        self._check_metadata(self._defaults.metadata)
        self._handlers: dict[tuple[str, str], Handler] = {}
        self._max_frame = self.limits.max_frame_size
        self._closed = False
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
        known = dict(self._services)
        if self._static is not None:
            known[self._static.name] = self._static
        return known

    async def close(self) -> None:
        self._closed = True
        CLIENTS.leave(self)
        endpoints = list(self._services.values()) + ([self._static] if self._static is not None else [])
        await asyncio.gather(*(e.close() for e in endpoints))
        if self._registry is not None:
            await self._registry.close()

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
        base: _Options,
        timeout: float | None,
        metadata: Mapping[str, MetadataValue] | None,
        compression: bool | None,
        json: bool | None,
    ) -> _Options:
        if timeout is not _UNSET and timeout is not None and timeout <= 0:
            raise ValueError(f"timeout must be > 0 or None, got {timeout}")
        md = base.metadata
        if metadata:
            self._check_metadata(metadata)
            md = {**md, **metadata}
        return _Options(
            base.timeout if timeout is _UNSET else timeout,
            md,
            base.compression if compression is None else compression,
            base.json if json is None else json,
            base.hash_key,
            base.balancer,
            base.fallbacks,
        )

    def _make_peer(self, address: str) -> Peer:
        host, _, port = address.rpartition(":")
        host = host.strip("[]")

        async def open_connection(on_state_change: Any) -> ClientConnection:
            return await connect(
                host,
                int(port),
                limits=self.limits,
                keepalive=self._keepalive,
                ssl=self._ssl,
                server_hostname=self._server_hostname,
                timeout=self._connect_timeout,
                on_state_change=on_state_change,
            )

        return Peer(address, open_connection, size=self._pool_size, backoff=Backoff(self._backoff_policy))

    def _first_peer(self) -> Peer:
        """The peer of the first static target (tests and benchmarks look inside it)."""
        assert self._static is not None
        self._endpoints_now("")
        return self._static.nodes[0].peer

    def _endpoints_now(self, service: str) -> Endpoints | None:
        """The endpoints of ``service`` if they are known already (the hot path: a dict lookup)."""
        eps = self._static or self._services.get(service)
        return eps if eps is not None and eps.resolved else None

    async def _endpoints(self, service: str) -> Endpoints:
        """Resolve ``service`` the first time and keep watching it."""
        eps = self._endpoints_now(service)
        if eps is not None:
            return eps
        assert self._registry is not None
        eps = self._services.get(service)
        if eps is None:
            eps = self._services[service] = Endpoints(
                service, self._balancer, self._make_peer, self._rng, breakers=self._breakers(service)
            )
            try:
                instances = await self._registry.resolve(service)
            except Exception as exc:  # noqa: BLE001 - a registry failure is the caller's UNAVAILABLE
                del self._services[service]
                raise RpcError(
                    StatusCode.UNAVAILABLE, f"cannot resolve {service!r}: {exc}", not_processed=True
                ) from None
            eps.set_instances(instance_entries(instances, self._zone))
            # A fresh, empty context: the watch must not inherit the deadline (or anything else)
            # of the call that happened to resolve the service first.
            eps.watch_task = asyncio.get_running_loop().create_task(
                watch_service(self._registry, eps, Backoff(self._backoff_policy), self._zone),
                context=contextvars.Context(),
            )
        await eps.ready.wait()
        return eps

    def _breakers(self, service: str) -> Any:
        return self.policy.instance_breakers(service) if self.policy is not None else None

    def _handler(self, spec: MethodSpec) -> Handler:
        key = (spec.service, spec.name)
        handler = self._handlers.get(key)
        if handler is None:
            terminal = _open_stream if spec.streaming else self._send
            handler = self._handlers[key] = chain(self._middleware, terminal)
        return handler

    def _invoke(self, spec: MethodSpec, args: Any, opts: _Options) -> Awaitable[Any]:
        if not self._middleware:
            return self._transmit(spec, args, opts, opts.metadata or None, opts.timeout, None)
        return self._handler(spec)(self._new_call(spec, args, opts))

    async def _invoke_chain(self, spec: MethodSpec, args: Any, opts: _Options) -> Any:
        """A call through the middleware, run when awaited: middleware may refuse the call
        (a switch, a limit) or spend something on it, which must not happen on creation."""
        return await self._handler(spec)(self._new_call(spec, args, opts))

    def _new_call(self, spec: MethodSpec, args: Any, opts: _Options) -> Call:
        """The Call the client middleware sees (its own copy of the metadata to add to)."""
        call = Call(spec, args, dict(opts.metadata) if opts.metadata else {}, "", opts.timeout)
        call.options = opts
        if self.policy is not None:  # retries measure what is left against this
            call.deadline = effective_deadline(asyncio.get_running_loop().time(), opts.timeout)
        return call

    async def _degradable(self, spec: MethodSpec, args: Any, opts: _Options, fallback: Any) -> Any:
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

    def _encode_body(self, spec: MethodSpec, args: Any, opts: _Options) -> tuple[bytes, int]:
        try:
            body = json_encode(args) if opts.json else msgpack_encode(args)
        except (TypeError, ValueError, OverflowError) as exc:
            raise RpcError(
                StatusCode.INVALID_ARGUMENT,
                f"arguments of {spec.qualname} cannot be encoded: {exc}",
                not_processed=True,
            ) from None
        flags = _JSON if opts.json else 0
        if opts.compression and len(body) >= MIN_COMPRESS_SIZE:
            body = compress(body)
            flags |= _COMPRESSED
        if len(body) > self.limits.max_frame_size:
            raise RpcError(
                StatusCode.RESOURCE_EXHAUSTED,
                f"request of {len(body)} bytes is over the {self.limits.max_frame_size}-byte frame limit",
            )
        return body, flags

    def _send(self, call: Call) -> Awaitable[Any]:
        """The innermost handler of the client's middleware chain (returns the transmit coroutine)."""
        return self._transmit(call.spec, call.args, call.options, call.metadata or None, call.timeout, call)

    async def _transmit(
        self, spec: MethodSpec, args: Any, opts: _Options, extra: Metadata | None, timeout: float | None, call: Any
    ) -> Any:
        """Pick a connection, send, await the answer, decode it; re-send what was never processed.

        This is the hot path of every unary call: it is written flat on purpose.
        """
        if self._closed:
            raise RpcError(StatusCode.CANCELLED, "client is closed")
        loop = asyncio.get_running_loop()
        now = loop.time()
        deadline = effective_deadline(now, timeout)
        if opts.plain:
            try:
                body = _msgpack_encode(args)
            except (TypeError, ValueError, OverflowError):
                body = b""  # _encode_body below raises with the message
            flags = 0
            if not body or len(body) > self._max_frame:
                body, flags = self._encode_body(spec, args, opts)
        else:
            body, flags = self._encode_body(spec, args, opts)
        template = spec.template
        attempt = 0
        tried: Peer | None = None
        avoid = None
        trace = None
        if call is not None:
            avoid = call.avoid
            trace = call.trace
            if trace is not None:
                _check_trace(trace)  # the connection sends it after the metadata (protocol.md)
        trailer = 0 if trace is None else TRACE_CONTEXT_SIZE
        while True:
            eps = self._static or self._services.get(spec.service)
            if eps is None or not eps.resolved:
                eps = await self._endpoints(spec.service)
            if avoid is not None:
                tried, avoid = eps.peers.get(avoid), None  # a retry: another instance if there is one
            peer = eps.only
            if peer is not None:
                done = NOOP_DONE
            else:
                if not eps.nodes:
                    raise no_instances(spec.service)
                peer, done = eps.pick(opts.hash_key, tried, opts.balancer)
            try:
                conn = peer.ready
                if conn is None or not conn.usable:
                    conn = peer.pick() or await _acquire(peer, deadline, spec)
                    now = loop.time()  # connecting took time: the budget sent must be what is left
                deadline_ms = None
                if deadline is not None:
                    remaining = deadline - now
                    if remaining <= 0:
                        raise RpcError(
                            StatusCode.DEADLINE_EXCEEDED, f"deadline of {spec.qualname} passed before it was sent"
                        )
                    deadline_ms = int(remaining * 1000) or 1
                if call is not None:
                    call.peer = peer.address  # as configured or registered: what a retry avoids
                last = template.last  # the common case, inline: same budget, no extra keys
                metadata = last[1] if extra is None and last[0] == deadline_ms else template.render(deadline_ms, extra)
                if len(metadata) + trailer > self._max_metadata:
                    raise _metadata_too_large(spec, len(metadata) + trailer, self.limits)
                sid, fut = conn.request(metadata, body, flags, deadline, trace)
                try:
                    frame: Frame = await fut
                except asyncio.CancelledError:
                    conn.cancel_stream(sid)
                    raise
            except RpcError as exc:
                if done is not NOOP_DONE:
                    # Only failures of the instance count against it, not application errors.
                    done(loop.time() - now, exc.code not in INSTANCE_FAILURES)
                if exc.not_processed and attempt < MAX_TRANSPARENT_RETRIES and _resend(exc, eps, self.policy):
                    attempt += 1
                    tried = peer
                    now = loop.time()
                    continue
                raise
            except asyncio.CancelledError:
                if done is not NOOP_DONE:
                    # The caller gave up (a timeout of its own, a hedge that lost): no verdict on
                    # the instance, but the time it took so far is a fair latency sample.
                    done(loop.time() - now, True)
                raise
            except BaseException:
                if done is not NOOP_DONE:
                    done(loop.time() - now, False)
                raise
            if done is not NOOP_DONE:
                done(loop.time() - now, True)
            if not frame.flags:
                try:
                    return spec.signature.decode_result_msgpack(frame.body)
                except (msgspec.MsgspecError, UnicodeDecodeError):
                    pass  # the slow path below builds the error message
            return _decode(spec, frame, self.limits)


async def _acquire(peer: Peer, deadline: float | None, spec: MethodSpec) -> ClientConnection:
    """A connection to ``peer``, waited for no longer than the call's deadline: a connect that
    hangs (a host cut off at the network: SYNs vanish) must not hold a call past its budget."""
    if deadline is None:
        return await peer.acquire()
    budget = asyncio.timeout_at(deadline)
    try:
        async with budget:
            return await peer.acquire()  # cancelling the wait leaves the connect attempt running
    except TimeoutError:
        if not budget.expired():  # a timeout of the connect itself, not of this call's budget
            raise RpcError(
                StatusCode.UNAVAILABLE, f"connecting to {peer.address} timed out", not_processed=True
            ) from None
        raise RpcError(
            StatusCode.DEADLINE_EXCEEDED,
            f"deadline of {spec.qualname} passed while connecting to {peer.address}",
            not_processed=True,
        ) from None


def _metadata_too_large(spec: MethodSpec, size: int, limits: Limits) -> RpcError:
    """Refused before sending: a server would refuse it too (its limit is the same by default),
    and bytes past the wire format's u16 could not even be framed."""
    return RpcError(
        StatusCode.INVALID_ARGUMENT,
        f"metadata of {spec.qualname} is {size} bytes, over the limit of {limits.max_metadata_size} bytes "
        "(Limits.max_metadata_size)",
        not_processed=True,
    )


def _check_trace(trace: object) -> None:
    """A Call's trace context must be the 25 bytes the server splits off; anything else would
    make the server misread the metadata and close a connection other calls share."""
    if type(trace) is not bytes or len(trace) != TRACE_CONTEXT_SIZE:
        raise RpcError(
            StatusCode.INTERNAL,
            f"call.trace must be {TRACE_CONTEXT_SIZE} bytes (trace id, span id, flags), got {trace!r:.60}",
            not_processed=True,
        )


def _resend(exc: RpcError, eps: Endpoints, policy: Policy | None) -> bool:
    """Re-send a refused call at once? UNAVAILABLE (a GOAWAY, a refused connection): yes.
    RESOURCE_EXHAUSTED (a full server, a shedder): only to another instance, and only without a
    policy; with one, its retries decide, with backoff, ``retry_after`` and a budget."""
    if exc.code is StatusCode.UNAVAILABLE:
        return True
    return exc.code is StatusCode.RESOURCE_EXHAUSTED and len(eps.nodes) > 1 and policy is None


def _decode(spec: MethodSpec, frame: Frame, limits: Limits) -> Any:
    """The result a RESPONSE or STREAM_DATA frame carries (the connection inflated its body)."""
    return spec.signature.decode_result(spec.qualname, frame.body, bool(frame.flags & _JSON))


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


class StreamCall:
    """The caller's side of a server stream: ``async for item in proxy.method(...)``.

    Leaving the loop early (``break``, an exception) cancels the stream on the server.
    """

    def __init__(self, client: Client, spec: MethodSpec, args: Any, opts: _Options) -> None:
        self._client = client
        self._spec = spec
        self._args = args
        self._opts = opts
        self._receiver: StreamReceiver | None = None
        self._done = False

    def __aiter__(self) -> AsyncIterator[Any]:
        # An async generator, so that leaving an ``async for`` early (break, return, an exception)
        # closes it promptly and the stream is cancelled on the server.
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        try:
            while True:
                try:
                    item = await self.__anext__()
                except StopAsyncIteration:
                    return
                yield item
        finally:
            self._cancel()

    def _cancel(self) -> None:
        if not self._done:
            self._done = True
            if self._receiver is not None:
                self._receiver.cancel()

    async def _open(self) -> StreamReceiver:
        """Open the stream through the client's middleware, which sees the opening as the call
        (a span and a traceparent, metrics and the access log of the opening, a policy's breaker
        and retries); without middleware, directly."""
        client = self._client
        if not client._middleware:
            return await self._open_raw(None)
        call = client._new_call(self._spec, self._args, self._opts)
        call.stream = self
        receiver: StreamReceiver = await client._handler(self._spec)(call)
        return receiver

    async def _open_raw(self, call: Call | None) -> StreamReceiver:
        client = self._client
        spec = self._spec
        loop = asyncio.get_running_loop()
        timeout = self._opts.timeout if call is None else call.timeout
        deadline = effective_deadline(loop.time(), timeout)
        body, flags = client._encode_body(spec, self._args, self._opts)
        extra: Metadata = dict(self._opts.metadata) if call is None else dict(call.metadata)
        extra["credit"] = client._stream_window
        trace = None if call is None else call.trace
        if trace is not None:
            _check_trace(trace)
        trailer = 0 if trace is None else TRACE_CONTEXT_SIZE
        attempt = 0
        tried: Peer | None = None
        while True:
            eps = client._endpoints_now(spec.service) or await client._endpoints(spec.service)
            if not eps.nodes:
                raise no_instances(spec.service)
            peer, done = eps.pick(self._opts.hash_key, tried, self._opts.balancer, stream=True)
            done(0.0, True)  # streams are long-lived: they do not feed latency to the balancer
            try:
                conn = await _acquire(peer, deadline, spec)
                if call is not None:
                    call.peer = peer.address
                # The budget left after connecting: what the server may spend.
                deadline_ms = None if deadline is None else max(1, int((deadline - loop.time()) * 1000))
                metadata = spec.template.render(deadline_ms, extra)
                if len(metadata) + trailer > client._max_metadata:
                    raise _metadata_too_large(spec, len(metadata) + trailer, client.limits)
                return conn.open_stream(metadata, body, flags, deadline, client._stream_window, trace)
            except RpcError as exc:
                if exc.not_processed and attempt < MAX_TRANSPARENT_RETRIES and _resend(exc, eps, client.policy):
                    attempt += 1
                    tried = peer
                    continue
                raise

    async def __anext__(self) -> Any:
        if self._done:
            raise StopAsyncIteration
        receiver = self._receiver
        if receiver is None:
            receiver = self._receiver = await self._open()
        try:
            frame = await receiver.next()
        except BaseException:
            self._done = True
            receiver.cancel()
            raise
        if frame is None:
            self._done = True
            raise StopAsyncIteration
        return _decode(self._spec, frame, self._client.limits)

    async def aclose(self) -> None:
        self._cancel()

    async def __aenter__(self) -> StreamCall:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _open_stream(call: Call) -> Awaitable[StreamReceiver]:
    """The innermost handler of a client chain for a stream: open it."""
    stream: StreamCall = call.stream
    return stream._open_raw(call)


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
    )

    def __init__(self, client: Client, spec: MethodSpec, opts: _Options) -> None:
        self._client = client
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
            return self._client._transmit(self._spec, struct, self._opts, self._extra, self._timeout, None)
        return self._client._invoke_chain(self._spec, struct, self._opts)

    def __repr__(self) -> str:
        return f"<remote method {self._qualname}>"


async def _refused(error: RpcError) -> Any:
    """A call that fails as soon as it is awaited (its arguments could not even be bound)."""
    raise error


class Proxy:
    """Stands in for a service class on the client; build one with ``client.proxy(Service)``."""

    def __init__(self, client: Client, service: type[Service], opts: _Options) -> None:
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
