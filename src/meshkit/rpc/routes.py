"""The route table: what each (service, method) of a Server runs, and the switches that change it.

A route is built once per method when the Server is made; the REQUEST path only reads it. A method
with no middleware keeps ``handler = None`` so the dispatcher calls the method itself (no chain, no
Call). Switches (``meshkit switch``) swap a route's handler for its fallback and back, so turning
one on costs nothing on the calls that do not hit it.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from meshkit.errors import AdmissionRefused, StatusCode
from meshkit.rpc.middleware import Call, Handler, Middleware, chain
from meshkit.rpc.service import MethodSpec, Service, method_specs, service_name
from meshkit.serde import encode_result

if TYPE_CHECKING:
    from meshkit.rpc.streams import StreamSink

#: The service a Server adds with ``admin=True`` for ``meshkit switch``; never registered, never
#: limited or shed (an overloaded server is exactly when an operator needs it).
ADMIN_SERVICE = "meshkit-admin"

_astuple = msgspec.structs.astuple
log = logging.getLogger("meshkit.server")

#: service name -> wire method name -> Route
Routes = dict[str, dict[str, "Route"]]


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


class Route:
    """One served method, with everything the REQUEST path reads precomputed (plain slots: each
    is read on every call)."""

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


def fallback_of(service: Service, spec: MethodSpec) -> Any:
    """The method's ``@rpc(fallback=...)`` as a callable (a name is looked up on the service)."""
    fallback = spec.options.fallback
    if fallback is None:
        return None
    return getattr(service, fallback) if isinstance(fallback, str) else fallback


def build_routes(services: Sequence[Service], middleware: list[Middleware], unguarded: list[Middleware]) -> Routes:
    """The route table of ``services``. The admin service gets the ``unguarded`` chain (no
    policy) and is never shed."""
    table: Routes = {}
    for svc in services:
        if not isinstance(svc, Service):
            raise TypeError(f"{svc!r} is not a meshkit Service instance")
        name = service_name(svc)
        if name in table:
            raise ValueError(f"two services are named {name!r}")
        routes = table[name] = {}
        admin_route = name == ADMIN_SERVICE
        for wire, spec in method_specs(svc).items():
            bound = getattr(svc, spec.attr)
            handler = build_handler(spec, bound, unguarded if admin_route else middleware)
            routes[wire] = route = Route(spec, bound, handler, fallback_of(svc, spec))
            if admin_route:
                route.sheddable = False
    return table


def build_handler(spec: MethodSpec, bound: Any, middleware: list[Middleware], force: bool = False) -> Handler | None:
    """The chain a call of ``bound`` goes through; None when there is none to go through (no
    middleware, not ``force``d, not a stream): the dispatcher then calls the method itself.

    The innermost step checks the result against the method's return type and raises the INTERNAL
    error for a wrong one, so that middleware (the access log, metrics) counts the call as failed,
    as the caller will. That costs a coroutine frame per call of a chain (none for ``-> Any``:
    every value passes). The dispatcher checks the answer again (a middleware may answer by
    itself), at the cost of a type lookup for values of exactly the declared type. A stream's
    innermost step pumps the generator into the call's sink, which checks each message."""
    if spec.streaming:
        open_stream = make_invoker(bound, spec.signature)

        async def pump(call: Call) -> Any:
            sink: StreamSink = call.stream
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
    exact = spec.result_exact

    async def invoke(call: Call) -> Any:
        value = await call_handler(call.args)
        if exact is None or (exact and type(value) not in exact):
            check_result(spec, value)
        return value

    async def invoke_plain(call: Call) -> Any:  # a fallback that is a plain function
        value = call_handler(call.args)
        if inspect.isawaitable(value):
            value = await value
        check_result(spec, value)
        return value

    def invoke_unchecked(call: Call) -> Any:  # ``-> Any``: nothing to check, so no frame of its own
        return call_handler(call.args)

    if force and not inspect.iscoroutinefunction(bound):
        return chain(middleware, invoke_plain)
    if exact is not None and not exact:
        return chain(middleware, invoke_unchecked)
    return chain(middleware, invoke)


def check_result(spec: MethodSpec, value: Any) -> None:
    """Raise the INTERNAL error (logged: it is the server's bug) if ``value`` is not of the
    method's return type or cannot be encoded. Checked on the msgpack encoding; a JSON call's
    answer is checked once more on its own encoding when it is sent."""
    body = encode_result(value, False)
    wrong = spec.signature.check_result(spec.qualname, value, body, False)
    if wrong is not None:
        log.error("%s", wrong.message)
        raise wrong


def switch_route(routes: Routes, middleware: list[Middleware], name: str, on: bool) -> None:
    """Switch ``name`` ("service.method") changed: if served here, the method now answers with its
    fallback (or, having none, refuses as degraded), or goes back to normal."""
    service, _, method = name.partition(".")
    route = routes.get(service, {}).get(method)
    if route is None:
        return
    if not on:
        route.handler = route.normal
    elif route.fallback_bound is not None:
        route.handler = build_handler(route.spec, route.fallback_bound, middleware, force=True)
    else:

        def refuse(call: Call) -> Any:
            raise AdmissionRefused(
                StatusCode.UNAVAILABLE,
                f"{name} is degraded by a switch on this server and has no fallback "
                f"(meshkit switch {name} off restores it)",
                {"reason": "switched"},
                not_processed=True,
            )

        route.handler = chain(middleware, refuse)
