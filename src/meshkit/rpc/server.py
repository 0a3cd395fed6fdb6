"""``Server``: routes REQUEST frames to service methods, runs them eagerly, answers, drains on stop."""

from __future__ import annotations

import asyncio
import inspect
import logging
import ssl as _ssl
from collections.abc import Callable, Sequence
from contextvars import copy_context
from typing import Any

import msgspec

from meshkit.discovery import open_registry
from meshkit.discovery.health import HealthMonitor, HealthThresholds
from meshkit.discovery.instance import Instance
from meshkit.discovery.registry import Registry
from meshkit.errors import DEADLINE_CANCEL_MESSAGE, FrameTooLarge, MalformedFrame, ProtocolError, RpcError, StatusCode
from meshkit.policy import Policy, Switches, process_switches
from meshkit.policy.server import AdmissionRefused
from meshkit.protocol.frames import HEADER, MAGIC, VERSION, Flags, Frame, FrameType
from meshkit.protocol.keepalive import KeepaliveConfig
from meshkit.protocol.limits import Limits
from meshkit.protocol.metadata import DEADLINE, METHOD, SERVICE, Metadata, decode_metadata
from meshkit.rpc.access_log import access_log
from meshkit.rpc.context import Context, _current
from meshkit.rpc.eager import EagerCall, end_step, install, resume
from meshkit.rpc.eager import stepping as _stepping
from meshkit.rpc.middleware import Call, Handler, Middleware, chain, default_front
from meshkit.rpc.service import MethodSpec, Service, method_specs, service_name
from meshkit.serde import encode_result, msgpack_encode
from meshkit.transport.deadlines import DeadlineWheel
from meshkit.transport.server import Listener, ServerConnection

log = logging.getLogger("meshkit.server")
#: The service a Server adds with ``admin=True`` for ``meshkit switch``; never registered, never
#: limited or shed (an overloaded server is exactly when an operator needs it).
ADMIN_SERVICE = "meshkit-admin"
_msgpack_encode = msgpack_encode

_astuple = msgspec.structs.astuple
_RESPONSE = int(FrameType.RESPONSE)
_pack = HEADER.pack
_MAGIC = MAGIC
_VERSION = VERSION
_ERROR = int(FrameType.ERROR)
_JSON = int(Flags.JSON)
_COMPRESSED = int(Flags.COMPRESSED)
_STREAM = int(Flags.STREAM)
_NOT_PROCESSED = int(Flags.NOT_PROCESSED)
_TRACE = int(Flags.TRACE)
_DEADLINE_MSG = DEADLINE_CANCEL_MESSAGE
_MD_CACHE_SIZE = 256
#: Self-checks a registered server runs by default: only event-loop lag (1 s); memory and disk are
#: opt-in because sensible limits depend on the deployment.
DEFAULT_HEALTH = HealthThresholds()
#: Servers ping idle clients less often than clients ping servers: a dead client costs little.
SERVER_KEEPALIVE = KeepaliveConfig(interval=30.0, timeout=10.0)


def make_invoker(bound: Any, signature: Any) -> Callable[[Any], Any]:
    """A function from the arguments Struct to the handler's coroutine. Keyword-only parameters
    are passed by name; the rest positionally (the fast, common case)."""
    kwonly = signature.kwonly
    if not kwonly:
        return lambda args: bound(*_astuple(args))
    n = len(signature.names) - len(kwonly)

    def invoke(args: Any) -> Any:
        values = _astuple(args)
        return bound(*values[:n], **dict(zip(kwonly, values[n:], strict=True)))

    return invoke


def default_server_middleware() -> list[Middleware]:
    """The chain a Server gets when ``middleware`` is not given: tracing when the process has
    it configured, then the access log."""
    return [*default_front("server"), access_log("meshkit.access")]


class _Route:
    __slots__ = (
        "bound",
        "decode",
        "fallback",
        "fallback_bound",
        "handler",
        "invoke",
        "normal",
        "sheddable",
        "spec",
        "streaming",
    )

    def __init__(self, spec: MethodSpec, bound: Any, handler: Handler | None, fallback_bound: Any) -> None:
        self.spec = spec
        self.bound = bound
        self.handler = handler  # None: no middleware, call ``bound`` directly
        self.normal = handler  # what ``handler`` goes back to when a switch is turned off
        self.decode = spec.signature.decode_args_msgpack
        self.streaming = spec.streaming
        self.invoke = make_invoker(bound, spec.signature)
        self.fallback_bound = fallback_bound
        #: The fallback as a function of the arguments Struct (policies answer with it), or None.
        self.fallback = make_invoker(fallback_bound, spec.signature) if fallback_bound is not None else None
        #: Refused outright when the shedder is full (a method with a fallback answers with it instead).
        self.sheddable = not spec.streaming and self.fallback is None


def _fallback_of(service: Service, spec: MethodSpec) -> Any:
    fallback = spec.options.fallback
    if fallback is None:
        return None
    return getattr(service, fallback) if isinstance(fallback, str) else fallback


class _StreamSink:
    """Server side of one server stream: waits for credit (and socket drain) before each message.
    The credit itself is the connection's (it counts CREDIT frames); this only waits for it."""

    __slots__ = ("_conn", "_json", "_spec", "_waiter", "cancel_requested", "stream_id", "task")

    def __init__(self, conn: ServerConnection, stream_id: int, json: bool, spec: MethodSpec) -> None:
        self._conn = conn
        self._spec = spec
        self.stream_id = stream_id
        self._json = json
        self._waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None
        self.cancel_requested: str | None = None

    def add_credit(self) -> None:
        """The caller granted more messages (the connection counted them): wake the sender."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def cancel(self, msg: Any = None) -> Any:
        self.cancel_requested = str(msg) if msg is not None else "cancelled"
        if self.task is not None:
            self.task.cancel(msg)

    async def send(self, item: Any) -> None:
        proto = self._conn.proto
        while proto.credit(self.stream_id) <= 0:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        body = encode_result(item, self._json)
        spec = self._spec
        wrong = spec.signature.check_result(spec.qualname, item, body, self._json)
        if wrong is not None:
            log.error("%s", wrong.message)
            raise wrong  # ends the stream with this error (see Server._fail)
        self._conn.send(proto.send_stream_data(self.stream_id, body, self._json))
        await self._conn.drain()


class Server:
    """Serves one or more :class:`Service` instances on one TCP port.

    ``middleware`` replaces the default chain (``[]`` for none); ``policy`` (a
    :class:`~meshkit.policy.Policy` or the path of a policy TOML file) adds rate limits, bulkheads,
    load shedding and fallbacks after it. ``switches`` (default: the process's) turn methods into
    their fallbacks at runtime; ``admin=True`` serves the ``meshkit-admin`` service that
    ``meshkit switch`` talks to, on this same port: changes need ``admin_token`` as
    ``authorization: Bearer TOKEN`` metadata, and a server given no token refuses every change
    (its status stays readable). ``limits`` bound what clients may send; ``keepalive`` finds dead
    clients; ``ssl`` turns on TLS (a context with ``verify_mode=CERT_REQUIRED`` makes it mutual TLS).
    """

    def __init__(
        self,
        services: Sequence[Service],
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        middleware: Sequence[Middleware] | None = None,
        limits: Limits | None = None,
        keepalive: KeepaliveConfig | None = SERVER_KEEPALIVE,
        ssl: _ssl.SSLContext | None = None,
        registry: str | None = None,
        weight: int = 100,
        zone: str = "",
        health: HealthThresholds | None = DEFAULT_HEALTH,
        deadline_resolution: float = 0.005,
        policy: Policy | str | None = None,
        switches: Switches | None = None,
        admin: bool = False,
        admin_token: str | None = None,
    ) -> None:
        if not services:
            raise ValueError("a Server needs at least one service")
        self.policy = Policy.from_file(policy) if isinstance(policy, str) else policy
        if switches is None:
            switches = self.policy.switches if self.policy is not None else process_switches()
        elif self.policy is not None and switches is not self.policy.switches:
            for name, on in self.policy.config.switches.items():  # the policy file's, on our own set
                switches.set(name, on)
        self.switches = switches
        services = list(services)
        if admin:
            from meshkit.rpc.admin import Admin

            services.append(Admin(self, admin_token))
        self._registry: Registry | None = open_registry(registry) if registry is not None else None
        self.instances: list[Instance] = []
        self.weight = weight
        self.zone = zone
        self._health = (
            HealthMonitor(health, self._health_changed) if health is not None and registry is not None else None
        )
        self.host = host
        self._port = port
        self.limits = limits or Limits()
        self._middleware = list(default_server_middleware() if middleware is None else middleware)
        self._unguarded = list(self._middleware)  # the admin service's chain: never limited or shed
        if self.policy is not None:
            self._middleware.append(self.policy.server_middleware())
        self._routes: dict[str, dict[str, _Route]] = {}
        for svc in services:
            if not isinstance(svc, Service):
                raise TypeError(f"{svc!r} is not a meshkit Service instance")
            name = service_name(svc)
            if name in self._routes:
                raise ValueError(f"two services are named {name!r}")
            routes = self._routes[name] = {}
            for wire, spec in method_specs(svc).items():
                bound = getattr(svc, spec.attr)
                admin_route = name == ADMIN_SERVICE  # never limited or shed
                handler = self._build_handler(spec, bound, chain_of=self._unguarded if admin_route else None)
                routes[wire] = route = _Route(spec, bound, handler, _fallback_of(svc, spec))
                if admin_route:
                    route.sheddable = False
        self.services = services
        self._unsubscribe: Callable[[], None] | None = None
        self.registry = registry
        self._listener = Listener(self._dispatch, limits=self.limits, keepalive=keepalive, ssl=ssl)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wheel: DeadlineWheel[EagerCall | _StreamSink] | None = None
        self._deadline_resolution = deadline_resolution
        self._started = False
        self._md_cache: dict[bytes, tuple[Metadata, _Route, Any]] = {}
        self._shedder = self.policy.shedder if self.policy is not None else None

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._listener.port or self._port

    @property
    def unhealthy_reasons(self) -> list[str]:
        """Why the health self-checks find this server unwell (empty while healthy or unchecked)."""
        health = self._health
        return [] if health is None or health.healthy else list(health.reasons)

    @property
    def serving(self) -> bool:
        """Started and not stopping: listening and (with a registry) registered."""
        return self._started

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        if self._started:
            raise RuntimeError("server already started")
        self._loop = asyncio.get_running_loop()
        install()  # asyncio.current_task() works inside eager handler steps
        self._wheel = DeadlineWheel(self._loop.call_at, _expire_call, self._deadline_resolution)
        await self._listener.start(self.host, self._port)
        self._started = True
        for name in list(self.switches.on):
            self._switched(name, True)
        self._unsubscribe = self.switches.subscribe(self._switched)
        if self.policy is not None:
            await self.policy.start()
        log.info("serving %s on %s", ", ".join(self._routes), self.address)
        if self._registry is not None:
            # Registered only once listening, so nobody is sent here before we can answer.
            self.instances = [
                Instance(service=name, host=self.host, port=self.port, weight=self.weight, zone=self.zone)
                for name in self._routes
                if name != ADMIN_SERVICE
            ]
            for instance in self.instances:
                await self._registry.register(instance)
            if self._health is not None:
                self._health.start()

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, send GOAWAY, wait up to ``grace`` seconds for calls in flight, then
        cancel the rest. Calls the clients had not yet sent go to other instances."""
        if not self._started:
            return
        self._started = False
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.policy is not None:
            await self.policy.stop()
        if self._health is not None:
            await self._health.stop()
        if self._registry is not None:
            # Deregistered *before* draining: clients stop choosing us while we finish what we have.
            for instance in self.instances:
                try:
                    await self._registry.deregister(instance)
                except Exception as exc:  # noqa: BLE001 - the lease will expire; draining must go on
                    log.warning("could not deregister %s: %s", instance.id, exc)
            await self._registry.close()  # stops heartbeats: this server created it from the URL
        cancelled = await self._listener.stop(grace)
        if self._wheel is not None:
            self._wheel.close()
        if cancelled:
            log.warning("stopped with %d calls cancelled after the %.1fs grace period", cancelled, grace)

    async def _health_changed(self, healthy: bool, reasons: list[str]) -> None:
        """A self-check changed: tell the registry, so clients stop (or resume) choosing us."""
        if healthy:
            log.info("healthy again; back in rotation")
        else:
            log.warning("unhealthy (%s); asking the registry to take us out of rotation", "; ".join(reasons))
        assert self._registry is not None
        self.instances = [msgspec.structs.replace(i, healthy=healthy) for i in self.instances]
        for instance in self.instances:
            try:
                await self._registry.register(instance)
            except Exception as exc:  # noqa: BLE001 - the next change tries again
                log.warning("could not update %s in the registry: %s", instance.id, exc)

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def connections(self) -> int:
        return len(self._listener.connections)

    # -- switches ----------------------------------------------------------------------------
    def _switched(self, name: str, on: bool) -> None:
        """A switch changed: the method (if served here) now answers with its fallback, or back."""
        service, _, method = name.partition(".")
        route = self._routes.get(service, {}).get(method)
        if route is None:
            return
        if not on:
            route.handler = route.normal
        elif route.fallback_bound is not None:
            route.handler = self._build_handler(route.spec, route.fallback_bound, force=True)
        else:

            def refuse(call: Call) -> Any:
                raise AdmissionRefused(
                    StatusCode.UNAVAILABLE,
                    f"{name} is degraded by a switch on this server and has no fallback "
                    f"(meshkit switch {name} off restores it)",
                    {"reason": "switched"},
                    not_processed=True,
                )

            route.handler = chain(self._middleware, refuse)

    # -- dispatch ----------------------------------------------------------------------------
    def _build_handler(
        self, spec: MethodSpec, bound: Any, force: bool = False, chain_of: list[Middleware] | None = None
    ) -> Handler | None:
        middleware = self._middleware if chain_of is None else chain_of
        if spec.streaming:
            open_stream = make_invoker(bound, spec.signature)

            async def pump(call: Call) -> Any:
                sink: _StreamSink = call.stream
                agen = open_stream(call.args)
                try:
                    async for item in agen:
                        await sink.send(item)
                finally:
                    await agen.aclose()

            return chain(middleware, pump)
        if not middleware and not force:
            return None

        call_handler = make_invoker(bound, spec.signature)

        def invoke(call: Call) -> Any:
            return call_handler(call.args)  # the handler's own coroutine: no extra frame

        async def invoke_plain(call: Call) -> Any:  # a fallback that is a plain function
            value = call_handler(call.args)
            return await value if inspect.isawaitable(value) else value

        if force and not inspect.iscoroutinefunction(bound):
            return chain(middleware, invoke_plain)

        return chain(middleware, invoke)

    def _dispatch(self, conn: ServerConnection, frame: Frame) -> None:
        sid = frame.stream_id
        raw = frame.metadata
        flags = frame.flags
        trace = frame.trace  # split off the metadata by the connection (protocol.md, "Flags")
        entry = self._md_cache.get(raw)
        if entry is None:
            entry = self._resolve(conn, sid, raw)
            if entry is None:
                return  # answered already: unknown service or method, or unreadable metadata
        template, route, budget = entry
        md = template.copy()  # a handler or middleware may change its own copy
        shedder = self._shedder
        if shedder is not None and shedder.in_flight >= shedder.limit and route.sheddable and shedder.queue_full():
            # Overloaded: refuse before decoding anything, with a pre-encoded answer. Under 10x
            # load most requests end here, so this path is what keeps goodput up.
            shedder.refuse()
            refusal = self.policy.shed_refusal(route.spec.qualname)  # type: ignore[union-attr]
            conn.send(conn.proto.send_error_body(sid, refusal, not_processed=True))
            return
        json = bool(flags & _JSON)
        spec = route.spec
        try:
            body = frame.body  # inflated by the connection if it came compressed
            if flags:
                args = spec.signature.decode_args(spec.qualname, body, json)
            else:
                try:
                    args = route.decode(body)
                except (msgspec.MsgspecError, UnicodeDecodeError):
                    args = spec.signature.decode_args(spec.qualname, body, False)  # raises, naming the field
            if bool(flags & _STREAM) != route.streaming:
                kind = "a server-streaming" if spec.streaming else "a unary"
                raise RpcError(StatusCode.FAILED_PRECONDITION, f"{spec.qualname} is {kind} method; call it as one")
            loop = self._loop
            assert loop is not None
            deadline = None
            if budget is not None:
                if budget.__class__ is RpcError:
                    raise budget
                deadline = loop.time() + budget
        except RpcError as exc:
            conn.send_error(sid, exc.code, exc.message, exc.details, not_processed=True)
            return
        except (FrameTooLarge, MalformedFrame) as exc:
            conn.send_error(sid, StatusCode.INVALID_ARGUMENT, f"bad request body: {exc}", not_processed=True)
            return
        ctx = Context(spec.service, spec.name, md, deadline, conn.peer, loop.time, trace)
        if route.streaming:
            self._start_stream(conn, sid, route, args, md, ctx, json)
            return
        handler = route.handler
        try:
            if handler is None:
                coro = route.invoke(args)
            else:
                call_ = Call(spec, args, md, conn.peer, budget)
                call_.trace = trace
                if route.fallback is not None:
                    call_.fallback = route.fallback
                coro = handler(call_)
                ctx.trace = call_.trace  # tracing middleware may have started a trace here
        except Exception as exc:  # noqa: BLE001 - a call that cannot be made fails its own stream only
            self._fail(conn, sid, spec, exc, None)
            return
        # The eager first step (see rpc/eager.py), in a fresh copy of the context. Everything on
        # this path is a C call but for the handler itself: no EagerCall is made unless the
        # handler suspends or asks for the current task.
        context = copy_context()
        context.run(_current.set, ctx)
        stepping = _stepping
        stepping[0] = (self._make_eager, loop, coro, context, conn, sid, spec, json, flags)
        try:
            yielded = context.run(coro.send, None)
        except StopIteration as stop:
            made = stepping[0]
            stepping[0] = None
            if made.__class__ is EagerCall:
                made.finished = True
                end_step(made)
            value = stop.value
            if flags:
                self._respond(conn, sid, spec, value, json, flags)
                return
            try:
                out = _msgpack_encode(value)
            except (TypeError, ValueError, OverflowError):
                self._respond(conn, sid, spec, value, json, flags)  # answers with the encoding error
                return
            exact = spec.result_exact
            if exact is None or (exact and type(value) not in exact):
                wrong = spec.signature.check_result(spec.qualname, value, out, False)
                if wrong is not None:
                    _answer_wrong_result(conn, sid, wrong)
                    return
            conn.send(conn.proto.send_response(sid, out))
            return
        except BaseException as exc:  # noqa: BLE001 - a handler's failure is the caller's error
            made = stepping[0]
            stepping[0] = None
            if made.__class__ is EagerCall:
                made.finished = True
                end_step(made)
            self._fail(conn, sid, spec, exc, None)
            return
        # Suspended: a Task continues the call (it may exist already, see EagerCall.materialize).
        made = stepping[0]
        stepping[0] = None
        if made.__class__ is EagerCall:
            call: EagerCall = made
            end_step(call)
        else:
            call = self._make_eager(loop, coro, context, conn, sid, spec, json, flags)
            call.materialize()
        call.yielded = yielded
        conn.attach(sid, call)
        if deadline is not None:
            self._wheel.add(call, deadline)  # type: ignore[union-attr]

    def _resolve(self, conn: ServerConnection, sid: int, raw: bytes) -> tuple[Metadata, _Route, Any] | None:
        """What a REQUEST's metadata means: the map, the route and the time budget in seconds
        (None for none, an RpcError for one that is not a number or has passed). Callers with one
        timeout send byte-identical metadata for most calls, so the answer is remembered for a
        few (not for a textual traceparent: it makes every one unique). None: refused here."""
        try:
            md = decode_metadata(raw)
        except ProtocolError as exc:
            conn.protocol_error(exc)
            return None
        service = md.get(SERVICE)
        routes = self._routes.get(service)  # type: ignore[arg-type]
        if routes is None:
            conn.send_error(
                sid,
                StatusCode.UNIMPLEMENTED,
                f"unknown service {service!r}; this server has: {', '.join(sorted(self._routes))}",
                not_processed=True,
            )
            return None
        method = md.get(METHOD)
        route = routes.get(method)  # type: ignore[arg-type]
        if route is None:
            conn.send_error(
                sid,
                StatusCode.UNIMPLEMENTED,
                f"unknown method {service}.{method}; {service} has: {', '.join(sorted(routes))}",
                not_processed=True,
            )
            return None
        budget: Any = None
        remaining = md.get(DEADLINE)
        if remaining is not None:
            if type(remaining) is not int and type(remaining) is not float:
                budget = RpcError(
                    StatusCode.INVALID_ARGUMENT, f"metadata 'deadline' must be a number of ms, got {remaining!r}"
                )
            elif remaining <= 0:
                budget = RpcError(StatusCode.DEADLINE_EXCEEDED, "deadline had passed before the call arrived")
            else:
                budget = remaining / 1000.0
        entry = (md, route, budget)
        if budget.__class__ is not RpcError and b"traceparent" not in raw:
            if len(self._md_cache) >= _MD_CACHE_SIZE:
                self._md_cache.clear()
            self._md_cache[raw] = (md.copy(), route, budget)
        return entry

    def _make_eager(
        self,
        loop: asyncio.AbstractEventLoop,
        coro: Any,
        context: Any,
        conn: ServerConnection,
        sid: int,
        spec: MethodSpec,
        json: bool,
        flags: int,
    ) -> EagerCall:
        return EagerCall(loop, coro, context, self._continuation, (conn, sid, spec, json, flags))

    async def _continuation(self, call: EagerCall) -> None:
        call.started = True
        if call.finished:
            return  # the handler finished in its eager step; the Task was made but not needed
        conn, sid, spec, json, flags = call.owner
        throw = None if call.cancel_requested is None else asyncio.CancelledError(call.cancel_requested)
        try:
            result = await resume(call.coro, call.yielded, throw)
        except BaseException as exc:  # noqa: BLE001
            self._fail(conn, sid, spec, exc, call.cancel_requested)
        else:
            self._respond(conn, sid, spec, result, json, flags)
        finally:
            conn.call_finished(sid)
            if self._wheel is not None:
                self._wheel.discard(call)

    def _respond(
        self, conn: ServerConnection, sid: int, spec: MethodSpec, value: Any, json: bool, req_flags: int
    ) -> None:
        try:
            body = encode_result(value, json)
        except RpcError as exc:
            conn.send_error(sid, exc.code, exc.message)
            return
        wrong = spec.signature.check_result(spec.qualname, value, body, json)
        if wrong is not None:
            _answer_wrong_result(conn, sid, wrong)
            return
        conn.send(conn.proto.send_response(sid, body, json, bool(req_flags & _COMPRESSED)))

    def _fail(
        self, conn: ServerConnection, sid: int, spec: MethodSpec, exc: BaseException, requested: str | None
    ) -> None:
        """Answer a failed call. ``requested`` says why meshkit itself cancelled it, if it did."""
        if isinstance(exc, RpcError):
            # Only this server's own refusals say "not processed"; see AdmissionRefused.
            refused = exc.not_processed and isinstance(exc, AdmissionRefused)
            conn.send_error(sid, exc.code, exc.message, exc.details, not_processed=refused)
        elif isinstance(exc, asyncio.CancelledError):
            if requested == _DEADLINE_MSG:
                conn.send_error(sid, StatusCode.DEADLINE_EXCEEDED, f"{spec.qualname} ran past its deadline")
            elif requested is None:
                # Nobody here cancelled it: the handler's own await was cancelled. Say so, or the
                # caller would wait for an answer that never comes.
                conn.send_error(sid, StatusCode.CANCELLED, f"{spec.qualname} was cancelled inside the handler")
            # else: cancelled by the caller or by shutdown; whoever cancelled answers, if anyone
        elif isinstance(exc, ConnectionError) and conn.is_closing:
            pass  # the connection went away under the handler: nobody to answer
        elif isinstance(exc, Exception):
            log.error("%s raised %s", spec.qualname, type(exc).__name__, exc_info=exc)
            conn.send_error(sid, StatusCode.UNKNOWN, f"{spec.qualname} raised {type(exc).__name__}: {exc}")
        else:
            conn.send_error(sid, StatusCode.INTERNAL, f"{spec.qualname} was interrupted")
            raise exc

    def _start_stream(
        self, conn: ServerConnection, sid: int, route: _Route, args: Any, md: Any, ctx: Context, json: bool
    ) -> None:
        credit = md.get("credit", 16)
        if type(credit) is not int or credit < 1:
            credit = 16
        sink = _StreamSink(conn, sid, json, route.spec)
        call = Call(route.spec, args, md, conn.peer, ctx.time_remaining())
        call.trace = ctx.trace
        call.stream = sink
        call.fallback = route.fallback
        context = copy_context()
        context.run(_current.set, ctx)
        task = asyncio.get_running_loop().create_task(
            self._run_stream(conn, sid, route, call, sink, ctx), context=context
        )
        sink.task = task
        conn.proto.open_credit(sid, credit)
        conn.attach(sid, sink)
        if ctx.deadline is not None:
            self._wheel.add(sink, ctx.deadline)  # type: ignore[union-attr]

    async def _run_stream(
        self, conn: ServerConnection, sid: int, route: _Route, call: Call, sink: _StreamSink, ctx: Context
    ) -> None:
        try:
            handler = route.handler
            assert handler is not None
            running = handler(call)
            ctx.trace = call.trace  # tracing middleware may have started a trace here
            await running
        except BaseException as exc:  # noqa: BLE001
            self._fail(conn, sid, route.spec, exc, sink.cancel_requested)
        else:
            conn.send(conn.proto.send_stream_end(sid))
        finally:
            conn.call_finished(sid)
            if self._wheel is not None:
                self._wheel.discard(sink)


def _answer_wrong_result(conn: ServerConnection, sid: int, wrong: RpcError) -> None:
    """A handler answered with a value its own return type rejects: the server's bug, so the
    caller gets INTERNAL (never an OK it would fail to decode) and the log says which method."""
    log.error("%s", wrong.message)
    conn.send_error(sid, wrong.code, wrong.message)


def _expire_call(call: EagerCall | _StreamSink) -> None:
    call.cancel(_DEADLINE_MSG)
