"""The gateway as an ASGI application: HTTP + JSON outside, meshkit RPC inside.

One request, in order (each step can answer on its own, and nothing after it runs):

1. ``X-Request-ID`` taken (when sane) or made, and echoed on every answer; CORS preflights.
2. The raw path normalised (routing.split_path: ``..``, ``//``, ``%2F`` refused) and routed:
   404, or 405 with ``Allow``. Authorisation is decided on this path and no other.
3. The per-IP limit (429 + ``Retry-After``): before credentials, so guessing them is slow.
4. Credentials (auth.Authenticator): 400 if ambiguous, 401 if missing or bad, 403 without the
   route's scopes; public routes need none.
5. The per-caller limit (429 + ``Retry-After``).
6. The body: ``Content-Length`` over the limit is refused before a byte is read (413), a body
   that grows past it while read too; JSON only (415); an object (400).
7. Arguments mapped and checked against the method's signature (400 naming the argument).
8. The call, through a meshkit ``Client`` (balancing, breakers, retries, deadline), with the
   caller's identity in metadata (``auth-subject``, ``auth-scopes``, ``auth-method``) set here
   and only here: no request header reaches metadata unless ``forward_headers`` names it.
9. The answer: the result as JSON with the route's status, or the call's status mapped to HTTP
   (mapping.HTTP_STATUS) with ``{"code", "message", "request_id"}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from meshkit.errors import RpcError, StatusCode
from meshkit.gateway.auth import Authenticator, AuthError, Identity, allowed
from meshkit.gateway.config import MAX_FORWARDED_VALUE, GatewayConfig, GatewayConfigError, Route
from meshkit.gateway.docs import (
    ASSET_CACHE_CONTROL,
    ASSETS_PREFIX,
    PAGE_CACHE_CONTROL,
    SwaggerUi,
    SwaggerUiMissing,
)
from meshkit.gateway.limits import RateLimits
from meshkit.gateway.mapping import HTTP_STATUS, ArgumentMapper, BadRequest, query_params
from meshkit.gateway.metrics import GatewayMetrics
from meshkit.gateway.routing import BadPath, NoRoute, Router, Template, split_path
from meshkit.policy import Breaker, ClientRule, Policy, PolicyConfig, PolicyError, Retry, Shedding
from meshkit.protocol.metadata import REQUEST_ID
from meshkit.rpc.client import Client
from meshkit.rpc.loading import ServiceImportError, import_service
from meshkit.rpc.service import MethodSpec, Service, method_specs, service_name

log = logging.getLogger("meshkit.gateway")
access = logging.getLogger("meshkit.gateway.access")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_random_bits = random.Random().getrandbits
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode
_ASSETS_PREFIX = ASSETS_PREFIX.encode()


#: The gateway's calls by default: a breaker per instance (a failing one leaves the rotation and
#: is probed back), retries of what was never processed or is idempotent, within a budget.
GATEWAY_POLICY = PolicyConfig(
    shedding=Shedding(enabled=False),
    client={"*": ClientRule(instance_breaker=Breaker(), retry=Retry())},
)


@dataclass(frozen=True)
class Bound:
    """A configured route with what serving it needs."""

    route: Route
    spec: MethodSpec | None
    mapper: ArgumentMapper


def load_services(names: list[str]) -> dict[str, type[Service]]:
    """Service classes by service name, from ``module:Class`` names, found as ``meshkit run``
    finds them: the working directory first, then ``sys.path`` (rpc.loading)."""
    found: dict[str, type[Service]] = {}
    for index, name in enumerate(names):
        try:
            obj = import_service(name)
        except ServiceImportError as exc:
            raise GatewayConfigError(f"gateway.services[{index}]: {exc}") from None
        cls = obj if isinstance(obj, type) else type(obj)
        found[service_name(cls)] = cls
    return found


class GatewayApp:
    """The ASGI application. ``clients`` maps a service name to the Client that calls it (tests
    and embedding); by default the gateway makes them at startup from ``registry`` or ``targets``."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        base: Path = Path("."),
        clients: dict[str, Client] | None = None,
        client_middleware: list[Any] | None = None,
        metrics: GatewayMetrics | None = None,
        tracer_provider: Any = None,
        trace_ratio: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.services = load_services(config.gateway.services)
        self.router: Router[Bound] = Router()
        self._specs: dict[tuple[str, str], MethodSpec | None] = {}
        for route in config.routes:
            spec = None
            cls = self.services.get(route.service)
            if cls is not None:
                spec = method_specs(cls).get(route.rpc_method)
                if spec is None:
                    raise ValueError(
                        f"route {route.method} {route.path}: {route.service} has no method {route.rpc_method!r}"
                    )
                if spec.streaming:
                    raise ValueError(
                        f"route {route.method} {route.path}: {route.call} is a stream; routes call unary methods"
                    )
            self._specs[(route.method, route.path)] = spec
            mapper = ArgumentMapper(spec.signature.args_type if spec is not None else None)
            self.router.add(route.method, route.path, Bound(route, spec, mapper))
            if spec is not None:
                self._check_params(route, mapper)
                if route.body is not None and route.body not in mapper.names:
                    raise ValueError(
                        f"route {route.method} {route.path}: body = {route.body!r} is not a parameter of {route.call}"
                    )
        self.auth = Authenticator(config.auth, base)
        self.limits = RateLimits(config.limits, clock)
        self.metrics = metrics
        self.clock = clock
        self.in_progress = 0  # requests being handled now (gateway.max_requests_in_progress bounds it)
        self._clients = clients
        self._base = base
        self._own_clients: list[Client] = []
        self._client_middleware = client_middleware
        self._max_body = config.gateway.max_body_bytes
        self._forward = {h.encode("latin-1"): h for h in config.gateway.forward_headers}
        self._openapi: bytes | None = None
        self._swagger_ui = SwaggerUi()
        #: With a tracer provider, every request is a SERVER span (or continues the caller's
        #: ``traceparent``); give the clients ``tracing.middleware("client", provider)`` so the
        #: calls it makes are its children.
        self._http_tracing = (
            HttpTracing(tracer_provider, trace_ratio, trust=config.gateway.trust_traceparent)
            if tracer_provider is not None
            else None
        )

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI 3.1 document of the routes (what ``/openapi.json`` serves)."""
        from meshkit.gateway.openapi import build

        return build(self.config, self._specs)

    @staticmethod
    def _check_params(route: Route, mapper: ArgumentMapper) -> None:
        from meshkit.gateway.routing import compile_template

        missing = [p for p in compile_template(route.path).params if p not in mapper.names]
        if missing:
            raise ValueError(
                f"route {route.method} {route.path}: {route.call} has no parameter {missing[0]!r} "
                f"(it takes {', '.join(mapper.names) or 'none'})"
            )

    # -- lifecycle -------------------------------------------------------------------------------
    async def startup(self) -> None:
        if self._clients is not None:
            return
        gw = self.config.gateway
        middleware = self._client_middleware
        policy = self.policy()
        clients: dict[str, Client] = {}
        if gw.registry is not None:
            shared = Client(registry=gw.registry, caller="gateway", middleware=middleware, policy=policy)
            self._own_clients.append(shared)
            for route in self.config.routes:
                clients[route.service] = shared
        by_address: dict[str, Client] = {}
        for service, address in self.config.targets.items():
            client = by_address.get(address)
            if client is None:
                client = by_address[address] = Client(
                    target=address, caller="gateway", middleware=middleware, policy=policy
                )
                self._own_clients.append(client)
            clients[service] = client
        self._clients = clients

    def policy(self) -> Policy:
        """The policy of the gateway's calls: the config's ``policy`` file, else GATEWAY_POLICY."""
        path = self.config.gateway.policy
        if path is None:
            return Policy(GATEWAY_POLICY)
        try:
            return Policy.from_file(self._base / path)
        except PolicyError as exc:
            raise ValueError(f"gateway.policy: {exc}") from None

    async def shutdown(self) -> None:
        for client in self._own_clients:
            await client.close()
        self._own_clients.clear()
        await self.limits.close()

    # -- ASGI ----------------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        # websockets: not served (the server closes them)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:  # noqa: BLE001 - reported to the server, which stops
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._http_tracing is not None:
            await self._http_tracing.run(scope, self._http_untraced(scope, receive, send))
            return
        await self._http_untraced(scope, receive, send)

    async def _http_untraced(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = self.clock()
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        request_id = _request_id(headers)
        out_headers: list[tuple[bytes, bytes]] = [(b"x-request-id", request_id.encode())]
        origin = _header(headers, b"origin")
        cors = self.config.cors
        cors_allowed = origin is not None and cors is not None and _origin_allowed(cors.allow_origins, origin)
        if cors_allowed:
            assert origin is not None
            out_headers.extend(self._cors_headers(origin))  # on every answer, a 503 included
        if scope.get("meshkit.disconnected"):  # a pipelined request whose client has already left
            self._done(scope, "disconnected", 499, start, request_id)
            return
        limit = self.config.gateway.max_requests_in_progress
        if self.in_progress >= limit:
            # Past this, each request only adds memory and latency for all of them: refuse at
            # once, cheaply, and say when to come back.
            out_headers.append((b"retry-after", b"1"))
            message = f"the gateway is handling its limit of {limit} requests; retry shortly"
            await _error(send, 503, "UNAVAILABLE", message, request_id, out_headers)
            self._done(scope, "overloaded", 503, start, request_id)
            return
        self.in_progress += 1
        scope["meshkit.task"] = asyncio.current_task()  # the server cancels it if the client leaves
        try:
            await self._handle(scope, receive, send, start, headers, request_id, out_headers, origin, cors_allowed)
        except asyncio.CancelledError:
            if not scope.get("meshkit.disconnected"):
                raise
            # The client went away (wherever the request was: reading the body, waiting for its
            # call, which is cancelled at the backend too, or writing an answer). Nobody to
            # answer; 499 as nginx counts it, once.
            if "meshkit.status" not in scope:
                self._done(scope, scope.get("meshkit.route", "disconnected"), 499, start, request_id)
        finally:
            self.in_progress -= 1

    async def _handle(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        start: float,
        headers: list[tuple[bytes, bytes]],
        request_id: str,
        out_headers: list[tuple[bytes, bytes]],
        origin: str | None,
        cors_allowed: bool,
    ) -> None:
        method: str = scope["method"]
        if origin is not None and self.config.cors is not None and method == "OPTIONS":
            if cors_allowed and _header(headers, b"access-control-request-method") is not None:
                out_headers.extend(self._preflight_headers())
                await _answer(send, 204, b"", out_headers)
                self._done(scope, "preflight", 204, start, request_id)
                return
            if not cors_allowed:
                await _error(send, 403, "PERMISSION_DENIED", "origin not allowed", request_id, out_headers)
                self._done(scope, "preflight", 403, start, request_id)
                return
        raw_path = _relative_raw_path(scope)
        if self.config.gateway.openapi and method in ("GET", "HEAD") and _is_docs(raw_path):
            path = raw_path.decode("latin-1")
            status = await self._docs(path, send, out_headers, method == "HEAD", request_id)
            label = "GET /docs/assets" if path.startswith(ASSETS_PREFIX) else f"GET {path}"
            self._done(scope, label, status, start, request_id)
            return
        template_text = "unmatched"
        status = 500
        try:
            status, template_text = await self._route(scope, raw_path, receive, send, headers, request_id, out_headers)
        except _Refusal as refusal:
            status = refusal.status
            extra = out_headers + refusal.headers
            await _error(send, refusal.status, refusal.code, refusal.message, request_id, extra)
            template_text = refusal.template or template_text
        except Exception:
            log.exception("request %s failed", request_id)
            status = 500
            await _error(send, 500, "INTERNAL", "internal gateway error", request_id, out_headers)
        self._done(scope, template_text, status, start, request_id)

    async def _route(
        self,
        scope: Scope,
        raw_path: bytes,
        receive: Receive,
        send: Send,
        headers: list[tuple[bytes, bytes]],
        request_id: str,
        out_headers: list[tuple[bytes, bytes]],
    ) -> tuple[int, str]:
        method: str = scope["method"]
        try:
            segments = split_path(raw_path.decode("latin-1"))
        except BadPath as exc:
            raise _Refusal(400, "INVALID_ARGUMENT", f"bad path: {exc}") from None
        try:
            bound, template, params = self.router.match(method, segments)
        except NoRoute as exc:
            if exc.allowed:
                allowed = exc.allowed + (["HEAD"] if "GET" in exc.allowed else [])
                allow = ", ".join(sorted(allowed)).encode()
                raise _Refusal(405, "UNIMPLEMENTED", "method not allowed", [(b"allow", allow)]) from None
            raise _Refusal(404, "NOT_FOUND", "no route for this path") from None
        route = bound.route
        label = scope["meshkit.route"] = f"{route.method} {template.text}"  # read if the client leaves
        try:
            per_ip = self.limits.per_ip
            if per_ip is not None:
                await _take(per_ip.take(self._client_address(scope, headers)), "address")
            identity = self._authenticate(headers, route)
            per_key = self.limits.per_key
            if per_key is not None and identity is not None:
                await _take(per_key.take(identity.subject), "caller")
            body = await self._body(scope, receive, headers, method)
            args = bound.mapper.build(params, query_params(scope.get("query_string", b"")), body, route.body)
        except _Refusal as refusal:
            refusal.template = label
            raise
        except BadRequest as exc:
            raise _Refusal(exc.status, "INVALID_ARGUMENT", exc.message, template=label) from None
        metadata = self._metadata(headers, identity, request_id)
        client = self._clients.get(route.service) if self._clients is not None else None
        if client is None:
            raise _Refusal(503, "UNAVAILABLE", f"no client for service {route.service}", template=label)
        timeout = route.timeout if route.timeout is not None else self.config.gateway.call_timeout
        try:
            result = await client.call(route.service, route.rpc_method, args, timeout=timeout, metadata=metadata)
        except RpcError as exc:
            status = HTTP_STATUS.get(exc.code, 500)
            extra = list(out_headers)
            wait = exc.details.get("retry_after") if isinstance(exc.details, dict) else None
            if status in (429, 503) and isinstance(wait, int | float) and 0 <= wait < 86_400:
                extra.append((b"retry-after", str(max(1, math.ceil(wait))).encode()))
            if status == 401:
                extra += _challenge(401)
            message = exc.message
            if status >= 500:
                # A service's failure is told to the log, not to whoever sent the request: messages
                # of errors nobody raised on purpose hold exception text, addresses, OS errors.
                log.warning("request %s: %s answered %s: %s", request_id, route.call, exc.code.name, exc.message)
                message = _SERVER_SIDE.get(status, "the service failed")
            await _error(send, status, exc.code.name, message, request_id, extra)
            return status, label
        try:
            payload = _json_encode(result)
        except (TypeError, ValueError, OverflowError) as exc:
            log.error("result of %s is not JSON-encodable: %s", route.call, exc)
            raise _Refusal(
                502, "INTERNAL", f"the result of {route.call} cannot be encoded as JSON", template=label
            ) from None
        if route.status == 204:
            await _answer(send, 204, b"", out_headers, no_body=True)
        else:
            await _answer(send, route.status, payload, out_headers, json_body=True, head=method == "HEAD")
        return route.status, label

    async def _docs(
        self, path: str, send: Send, headers: list[tuple[bytes, bytes]], head: bool, request_id: str
    ) -> int:
        """``/openapi.json``, the ``/docs`` page, and the page's assets; the status answered."""
        if path == "/openapi.json":
            if self._openapi is None:
                self._openapi = json.dumps(self.openapi(), indent=1).encode()
            await _answer(send, 200, self._openapi, headers, json_body=True, head=head)
            return 200
        try:
            if path == "/docs":
                page = self._swagger_ui.page(self.config.gateway.title)
                extra = [(b"content-type", b"text/html; charset=utf-8"), (b"cache-control", PAGE_CACHE_CONTROL)]
                await _answer(send, 200, page, [*headers, *extra], head=head)
                return 200
            asset = self._swagger_ui.asset(path.removeprefix(ASSETS_PREFIX))
        except SwaggerUiMissing as exc:
            log.error("/docs: %s", exc)
            await _error(send, 503, "UNAVAILABLE", str(exc), request_id, headers)
            return 503
        if asset is None:
            await _error(send, 404, "NOT_FOUND", f"no asset {path}", request_id, headers)
            return 404
        extra = [
            (b"content-type", asset.content_type),
            (b"cache-control", ASSET_CACHE_CONTROL),
            (b"x-content-type-options", b"nosniff"),
        ]
        await _answer(send, 200, asset.body, [*headers, *extra], head=head)
        return 200

    def _authenticate(self, headers: list[tuple[bytes, bytes]], route: Route) -> Identity | None:
        try:
            identity = self.auth.authenticate(headers)
        except AuthError as exc:
            code = "INVALID_ARGUMENT" if exc.status == 400 else "UNAUTHENTICATED"
            raise _Refusal(exc.status, code, exc.message, _challenge(exc.status)) from None
        if route.public:
            return identity
        if identity is None:
            raise _Refusal(401, "UNAUTHENTICATED", "credentials required", _challenge(401))
        if not allowed(identity, route.scopes):
            missing = [s for s in route.scopes if s not in identity.scopes]
            raise _Refusal(403, "PERMISSION_DENIED", f"missing scope {missing[0]!r}")
        return identity

    async def _body(self, scope: Scope, receive: Receive, headers: list[tuple[bytes, bytes]], method: str) -> Any:
        limit = self._max_body
        length_header = _header(headers, b"content-length")
        if length_header is not None:
            if not length_header.isdigit():
                raise _Refusal(400, "INVALID_ARGUMENT", "Content-Length is not a number")
            if int(length_header) > limit:
                raise _Refusal(413, "RESOURCE_EXHAUSTED", f"body over the limit of {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        deadline = asyncio.get_running_loop().time() + self.config.gateway.body_timeout
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise _Refusal(
                    408, "DEADLINE_EXCEEDED", "the body did not arrive in time", [(b"connection", b"close")]
                ) from None
            if message["type"] == "http.disconnect":
                raise _Refusal(499, "CANCELLED", "client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _Refusal(413, "RESOURCE_EXHAUSTED", f"body over the limit of {limit} bytes")
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        if not size:
            return None
        if method not in _BODY_METHODS:
            raise _Refusal(400, "INVALID_ARGUMENT", f"a {method} request takes no body")
        content_type = (_header(headers, b"content-type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise _Refusal(415, "INVALID_ARGUMENT", "the body must be application/json")
        try:
            body = _json_decode(b"".join(chunks))
        except msgspec.DecodeError as exc:
            raise _Refusal(400, "INVALID_ARGUMENT", f"the body is not valid JSON: {exc}") from None
        except RecursionError:
            raise _Refusal(400, "INVALID_ARGUMENT", "the body's JSON is nested too deeply") from None
        return body

    def _metadata(
        self, headers: list[tuple[bytes, bytes]], identity: Identity | None, request_id: str
    ) -> dict[str, str | int | float | bool | None]:
        metadata: dict[str, str | int | float | bool | None] = {REQUEST_ID: request_id}
        forward = self._forward
        if forward:
            for name, value in headers:
                key = forward.get(name)
                if key is not None and key not in metadata:
                    if len(value) > MAX_FORWARDED_VALUE:
                        raise _Refusal(431, "INVALID_ARGUMENT", f"header {key} is over {MAX_FORWARDED_VALUE} bytes")
                    try:
                        metadata[key] = value.decode("ascii")
                    except UnicodeDecodeError:
                        raise _Refusal(400, "INVALID_ARGUMENT", f"header {key} is not ASCII") from None
        if identity is not None:  # set last: nothing from the request can stand in for them
            metadata["auth-subject"] = identity.subject
            metadata["auth-scopes"] = " ".join(sorted(identity.scopes))
            metadata["auth-method"] = identity.method
        return metadata

    def _client_address(self, scope: Scope, headers: list[tuple[bytes, bytes]]) -> str:
        if self.config.gateway.trust_forwarded:
            forwarded = [v for k, v in headers if k == b"x-forwarded-for"]
            if forwarded:
                last = forwarded[-1].decode("latin-1").split(",")[-1].strip()
                if last:
                    return last
        client = scope.get("client")
        return str(client[0]) if client else "unknown"

    def _cors_headers(self, origin: str) -> list[tuple[bytes, bytes]]:
        cors = self.config.cors
        assert cors is not None
        out = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
        if cors.allow_credentials:
            out.append((b"access-control-allow-credentials", b"true"))
        if cors.expose_headers:
            out.append((b"access-control-expose-headers", ", ".join(cors.expose_headers).encode()))
        return out

    def _preflight_headers(self) -> list[tuple[bytes, bytes]]:
        cors = self.config.cors
        assert cors is not None
        return [
            (b"access-control-allow-methods", ", ".join(cors.allow_methods).encode()),
            (b"access-control-allow-headers", ", ".join(cors.allow_headers).encode()),
            (b"access-control-max-age", str(cors.max_age).encode()),
        ]

    def _done(self, scope: Scope, route: str, status: int, start: float, request_id: str) -> None:
        elapsed = self.clock() - start
        scope["meshkit.route"] = route
        scope["meshkit.status"] = status
        if self.metrics is not None:
            self.metrics.observe(route, status, elapsed)
        if access.isEnabledFor(logging.INFO):
            client = scope.get("client")
            raw = scope.get("raw_path") or b""
            access.info(
                "%s %s -> %d in %.3f ms route=%s peer=%s request_id=%s",
                scope["method"],
                raw.decode("latin-1") if isinstance(raw, bytes) else "-",  # still percent-encoded: one line
                status,
                elapsed * 1000,
                route,
                client[0] if client else "-",
                request_id,
            )


class HttpTracing:
    """A SERVER span per HTTP request, named by its route template, continuing an incoming W3C
    ``traceparent``. Sampling as meshkit's RPC tracing decides it: once, where the trace starts
    (``ratio`` of new traces), and the caller's decision otherwise; an unsampled request costs
    no span, only a context its calls forward. With ``trust=False`` (``gateway.trust_traceparent
    = false``) an incoming context is continued (same trace id, its span as the parent) but its
    sampled flag is not obeyed: the gateway decides with ``ratio``, so callers on the internet
    cannot have every one of their requests traced."""

    def __init__(self, provider: Any, ratio: float, trust: bool = True) -> None:
        import random

        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.tracer = provider.get_tracer("meshkit.gateway")
        self.ratio = ratio
        self.trust = trust
        self.propagator = TraceContextTextMapPropagator()
        self.random = random.Random()

    async def run(self, scope: Scope, handling: Awaitable[None]) -> None:
        from opentelemetry import context as otel_context
        from opentelemetry import trace
        from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags

        carrier = {}
        for name, value in scope["headers"]:
            if name in (b"traceparent", b"tracestate"):
                carrier[name.decode()] = value.decode("latin-1")
        parent = self.propagator.extract(carrier) if carrier else None
        remote = trace.get_current_span(parent).get_span_context() if parent is not None else None
        if remote is not None and remote.is_valid:
            if self.trust:
                sampled = remote.trace_flags.sampled
            else:  # continue the trace, decide its sampling here
                sampled = self.random.random() < self.ratio
                decided = SpanContext(
                    remote.trace_id,
                    remote.span_id,
                    True,
                    TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT),
                    remote.trace_state,
                )
                parent = trace.set_span_in_context(NonRecordingSpan(decided))
        else:
            parent = None
            sampled = self.random.random() < self.ratio
        if not sampled:
            if parent is None:  # a new unsampled trace: ids for its calls to forward and logs to show
                bits = self.random.getrandbits(192) | (1 << 64) | 1
                unsampled = SpanContext(bits >> 64, bits & ((1 << 64) - 1), False, TraceFlags(0))
                parent = trace.set_span_in_context(NonRecordingSpan(unsampled))
            token = otel_context.attach(parent)
            try:
                await handling
            finally:
                otel_context.detach(token)
            return
        method = scope["method"]
        span = self.tracer.start_span(
            f"{method}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope.get("path", ""), "url.scheme": "http"},
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            await handling
        finally:
            route = scope.get("meshkit.route")
            status = scope.get("meshkit.status")
            if isinstance(route, str) and route != "unmatched":
                span.update_name(route)
                span.set_attribute("http.route", route.partition(" ")[2])
            if isinstance(status, int):
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(StatusCode.ERROR)
            span.end()
            otel_context.detach(token)


class _Refusal(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: list[tuple[bytes, bytes]] | None = None, template: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or []
        self.template = template


async def _take(decision: Awaitable[tuple[bool, float]], what: str) -> None:
    ok, wait = await decision
    if not ok:
        raise _Refusal(
            429,
            StatusCode.RESOURCE_EXHAUSTED.name,
            f"rate limit of this {what} reached",
            [(b"retry-after", str(max(1, math.ceil(wait))).encode())],
        )


_SERVER_SIDE = {
    500: "the service failed; the gateway's log has the details (by request id)",
    501: "the service does not implement this call",
    503: "the service is unavailable; try again later",
    504: "the service did not answer in time",
}


def _is_docs(raw_path: bytes) -> bool:
    return raw_path in (b"/openapi.json", b"/docs") or raw_path.startswith(_ASSETS_PREFIX)


def _relative_raw_path(scope: Scope) -> bytes:
    """The raw (still percent-encoded) path below the mount point: a parent ASGI app that mounts
    the gateway sets ``root_path``; its segments are dropped by count, so a prefix sent
    percent-encoded is stripped like the plain one."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
    root = (scope.get("root_path") or "").strip("/")
    if not root:
        return raw
    parts = raw.split(b"/")
    drop = len(root.split("/"))
    return b"/" + b"/".join(parts[1 + drop :]) if len(parts) > drop + 1 else b"/"


def _challenge(status: int) -> list[tuple[bytes, bytes]]:
    return [(b"www-authenticate", b'Bearer realm="meshkit"')] if status == 401 else []


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def _request_id(headers: list[tuple[bytes, bytes]]) -> str:
    given = _header(headers, b"x-request-id")
    if given is not None and _REQUEST_ID.fullmatch(given):
        return given
    # 128 random bits from the process's PRNG: an id to find log lines by, not a secret (uuid4
    # reads the OS's random source: a system call per request, 8 % of the gateway's time).
    return f"{_random_bits(128):032x}"


def _origin_allowed(allowed_origins: list[str], origin: str) -> bool:
    return "*" in allowed_origins or origin in allowed_origins


async def _answer(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    json_body: bool = False,
    head: bool = False,
    no_body: bool = False,
) -> None:
    out = list(headers)
    if json_body:
        out.append((b"content-type", b"application/json"))
    if not no_body:  # a 204 has neither a body nor a Content-Length
        out.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _error(
    send: Send, status: int, code: str, message: str, request_id: str, headers: list[tuple[bytes, bytes]]
) -> None:
    body = json.dumps({"code": code, "message": message, "request_id": request_id}).encode()
    await _answer(send, status, body, headers, json_body=True)


__all__ = ["Bound", "GatewayApp", "Template"]
