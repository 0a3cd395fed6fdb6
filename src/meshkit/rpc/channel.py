"""The channel: where a call goes and how it gets there.

A :class:`Channel` owns everything between "call this method with these arguments" and the bytes
on a connection: which instances a service has (a static target or a registry, watched), the
balancer's pick, connections (pooled per instance), the deadline (its own, or what the calling
handler has left), the encoding of arguments and metadata, the size limits, and one attempt loop
shared by unary calls and server streams, which re-sends a call the server certainly never
processed (a GOAWAY, a refused connection) to another instance. Middleware, proxies and
fallbacks sit above it (:mod:`meshkit.rpc.client`); connections below it (:mod:`meshkit.transport`).

Its interface is two coroutines, ``unary`` and ``open_stream`` (:class:`RpcChannel`), in the
spirit of an httpx transport: the client is a facade over one, and a test can put calls on any
connection by choosing how the channel connects (``connect=``, see
:func:`meshkit.testing.memory.connect_in_memory`).
"""

from __future__ import annotations

import asyncio
import contextvars
import random
import ssl as _ssl
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import msgspec

from meshkit.balance import NOOP_DONE
from meshkit.discovery import open_registry
from meshkit.discovery.registry import Registry
from meshkit.errors import INSTANCE_FAILURES, RpcError, StatusCode
from meshkit.protocol.frames import TRACE_CONTEXT_SIZE, Flags, Frame
from meshkit.protocol.keepalive import KeepaliveConfig
from meshkit.protocol.limits import Limits
from meshkit.protocol.metadata import Metadata
from meshkit.rpc.context import _current
from meshkit.rpc.endpoints import Endpoints, instance_entries, no_instances, watch_service
from meshkit.rpc.options import CallOptions, parse_target
from meshkit.rpc.service import MethodSpec
from meshkit.serde import json_encode, msgpack_encode
from meshkit.transport.backoff import Backoff, BackoffPolicy
from meshkit.transport.client import ClientConnection, StreamReceiver, connect
from meshkit.transport.pool import Peer

_msgpack_encode = msgpack_encode
_current_get = _current.get
_JSON = int(Flags.JSON)
#: A call that the server certainly never processed is re-sent at most this many times.
MAX_TRANSPARENT_RETRIES = 2

#: How a channel opens a connection to ``host:port`` with these limits (``on_state_change`` goes to
#: the connection); the default is a TCP (or TLS) connect.
Connector = Callable[[str, int, Limits, Callable[[ClientConnection], None]], Awaitable[ClientConnection]]


class RpcChannel(Protocol):
    """What a client needs from a channel: send a unary call, open a server stream."""

    def unary(
        self, spec: MethodSpec, args: Any, opts: CallOptions, extra: Metadata | None, timeout: float | None, call: Any
    ) -> Awaitable[Any]: ...

    def open_stream(
        self, spec: MethodSpec, args: Any, opts: CallOptions, extra: Metadata | None, timeout: float | None, call: Any
    ) -> Awaitable[StreamReceiver]: ...


class Channel:
    """Endpoints, connections and the attempt loop of one client (see the module docstring).

    ``resend_refusals`` says whether a RESOURCE_EXHAUSTED refusal (a full server, a shedder) is
    re-sent at once to another instance; a client with a retry policy leaves that to the policy,
    which backs off, honours ``retry_after`` and spends a budget.
    """

    def __init__(
        self,
        *,
        target: str | None,
        registry: str | None,
        balancer: str,
        zone: str = "",
        limits: Limits | None = None,
        keepalive: KeepaliveConfig | None = None,
        ssl: _ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        connect_timeout: float = 5.0,
        backoff: BackoffPolicy | None = None,
        pool_size: int = 1,
        stream_window: int = 64,
        breakers: Callable[[str], Any] | None = None,
        resend_refusals: bool = True,
        connector: Connector | None = None,
    ) -> None:
        self.limits = limits = limits or Limits()
        self._max_metadata = limits.max_metadata_size  # checked on every call: one attribute
        self._keepalive = keepalive
        self._ssl = ssl
        self._server_hostname = server_hostname
        self._connect_timeout = connect_timeout
        self._backoff_policy = backoff or BackoffPolicy()
        self.stream_window = stream_window
        self._pool_size = pool_size
        self._balancer = balancer
        self._zone = zone
        self._rng = random.Random()
        self._breakers = breakers or (lambda service: None)
        self._resend_refusals = resend_refusals
        self._connector = connector
        self.registry: Registry | None = None
        self.services: dict[str, Endpoints] = {}
        self.static: Endpoints | None = None
        self.closed = False
        if target is not None:
            addresses = parse_target(target)
            self.static = Endpoints(target, balancer, self._make_peer, self._rng, breakers=self._breakers("*"))
            self.static.set_instances([(f"{h}:{p}", f"{h}:{p}", 1, None) for h, p in addresses])
        else:
            assert registry is not None
            self.registry = open_registry(registry)

    # -- endpoints -------------------------------------------------------------------------
    def breakers_changed(self, changed: Callable[[str], bool]) -> None:
        """The policy's ``instance_breaker`` rules changed (a live policy): the endpoints of every
        service whose rule did get breakers made afresh."""
        if self.static is not None and changed("*"):
            self.static.use_breakers(self._breakers("*"))
        for service, eps in list(self.services.items()):
            if changed(service):
                eps.use_breakers(self._breakers(service))

    def _make_peer(self, address: str) -> Peer:
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        connector = self._connector

        async def open_connection(on_state_change: Any) -> ClientConnection:
            if connector is not None:
                return await connector(host, int(port), self.limits, on_state_change)
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

    def endpoints(self) -> dict[str, Endpoints]:
        """The instance sets this channel knows, by service (its static target under its text)."""
        known = dict(self.services)
        if self.static is not None:
            known[self.static.name] = self.static
        return known

    def endpoints_now(self, service: str) -> Endpoints | None:
        """The endpoints of ``service`` if they are known already (the hot path: a dict lookup)."""
        eps = self.static or self.services.get(service)
        return eps if eps is not None and eps.resolved else None

    async def resolve(self, service: str) -> Endpoints:
        """The endpoints of ``service``: resolved the first time, then kept current by a watch."""
        eps = self.endpoints_now(service)
        if eps is not None:
            return eps
        assert self.registry is not None
        eps = self.services.get(service)
        if eps is None:
            eps = self.services[service] = Endpoints(
                service, self._balancer, self._make_peer, self._rng, breakers=self._breakers(service)
            )
            try:
                instances = await self.registry.resolve(service)
            except Exception as exc:  # noqa: BLE001 - a registry failure is the caller's UNAVAILABLE
                del self.services[service]
                raise RpcError(
                    StatusCode.UNAVAILABLE, f"cannot resolve {service!r}: {exc}", not_processed=True
                ) from None
            eps.set_instances(instance_entries(instances, self._zone))
            # A fresh, empty context: the watch must not inherit the deadline (or anything else)
            # of the call that happened to resolve the service first.
            eps.watch_task = asyncio.get_running_loop().create_task(
                watch_service(self.registry, eps, Backoff(self._backoff_policy), self._zone),
                context=contextvars.Context(),
            )
        await eps.ready.wait()
        return eps

    async def close(self) -> None:
        self.closed = True
        endpoints = list(self.services.values()) + ([self.static] if self.static is not None else [])
        await asyncio.gather(*(e.close() for e in endpoints))
        if self.registry is not None:
            await self.registry.close()

    # -- calls -----------------------------------------------------------------------------
    def encode_body(self, spec: MethodSpec, args: Any, opts: CallOptions) -> tuple[bytes, int]:
        """The request body and its flags (compression and the frame limit are the connection's)."""
        try:
            body = json_encode(args) if opts.json else msgpack_encode(args)
        except (TypeError, ValueError, OverflowError) as exc:
            raise RpcError(
                StatusCode.INVALID_ARGUMENT,
                f"arguments of {spec.qualname} cannot be encoded: {exc}",
                not_processed=True,
            ) from None
        return body, _JSON if opts.json else 0

    def open_stream(
        self, spec: MethodSpec, args: Any, opts: CallOptions, extra: Metadata | None, timeout: float | None, call: Any
    ) -> Awaitable[StreamReceiver]:
        """Open a server stream; its messages arrive through the receiver."""
        window = self.stream_window
        stream_md: Metadata = dict(extra) if extra else {}
        stream_md["credit"] = window
        return self.unary(spec, args, opts, stream_md, timeout, call, window)

    async def unary(
        self,
        spec: MethodSpec,
        args: Any,
        opts: CallOptions,
        extra: Metadata | None,
        timeout: float | None,
        call: Any,
        window: int = 0,
    ) -> Any:
        """Send a unary call and return its decoded result: pick an instance and a connection,
        send, await and decode the answer; re-send what was never processed. The one attempt
        loop of the channel: ``window`` > 0 opens a server stream instead (:meth:`open_stream`).

        This is the hot path of every unary call: it is written flat on purpose.
        """
        if self.closed:
            raise RpcError(StatusCode.CANCELLED, "client is closed")
        loop = asyncio.get_running_loop()
        now = loop.time()
        # effective_deadline(), inline: its own budget, never past what the calling handler has left.
        handling = _current_get()
        if timeout is None:
            deadline = handling.deadline if handling is not None else None
        else:
            deadline = now + timeout
            if handling is not None and handling.deadline is not None and handling.deadline < deadline:
                deadline = handling.deadline
        if opts.plain:
            try:
                body = _msgpack_encode(args)
            except (TypeError, ValueError, OverflowError):
                body = b""  # encode_body below raises with the message
            flags = 0
            if not body:
                body, flags = self.encode_body(spec, args, opts)
        else:
            body, flags = self.encode_body(spec, args, opts)
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
            eps = self.static or self.services.get(spec.service)
            if eps is None or not eps.resolved:
                eps = await self.resolve(spec.service)
            if avoid is not None:
                tried, avoid = eps.peers.get(avoid), None  # a retry: another instance if there is one
            peer = eps.only
            if peer is not None:
                done = NOOP_DONE
            else:
                if not eps.nodes:
                    raise no_instances(spec.service)
                peer, done = eps.pick(opts.hash_key, tried, opts.balancer, stream=bool(window))
                if window:
                    done(0.0, True)  # streams are long-lived: they do not feed latency to the balancer
                    done = NOOP_DONE
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
                if window:
                    return conn.open_stream(metadata, body, flags, deadline, window, trace, opts.compression)
                sid, fut = conn.request(metadata, body, flags, deadline, trace, opts.compression)
                try:
                    frame: Frame = await fut
                except asyncio.CancelledError:
                    conn.cancel_stream(sid)
                    raise
            except RpcError as exc:
                if done is not NOOP_DONE:
                    # Only failures of the instance count against it, not application errors.
                    done(loop.time() - now, exc.code not in INSTANCE_FAILURES)
                if exc.not_processed and attempt < MAX_TRANSPARENT_RETRIES and self._resend(exc, eps):
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
            return decode_result(spec, frame)

    def _resend(self, exc: RpcError, eps: Endpoints) -> bool:
        """Re-send a refused call at once? UNAVAILABLE (a GOAWAY, a refused connection): yes.
        RESOURCE_EXHAUSTED (a full server, a shedder): only to another instance, and only when
        no retry policy decides instead (``resend_refusals``)."""
        if exc.code is StatusCode.UNAVAILABLE:
            return True
        return exc.code is StatusCode.RESOURCE_EXHAUSTED and len(eps.nodes) > 1 and self._resend_refusals


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


def decode_result(spec: MethodSpec, frame: Frame) -> Any:
    """The result a RESPONSE or STREAM_DATA frame carries (the connection inflated its body)."""
    return spec.signature.decode_result(spec.qualname, frame.body, bool(frame.flags & _JSON))
