"""The gateway as an ASGI application: HTTP + JSON outside, meshkit RPC inside.

One request, in order (each step can answer on its own, and nothing after it runs); this module
composes the steps, each of which lives in its own module:

1. ``X-Request-ID`` taken (when sane) or made, and echoed on every answer; CORS preflights
   (their headers and the request id: headers.py). ``/openapi.json`` and ``/docs`` are answered
   next, before routing (pages.py).
2. The raw path normalised (routing.split_path: ``..``, ``//``, ``%2F`` refused) and routed:
   404, or 405 with ``Allow`` (here, over the router binding.py made of the config's routes).
   Authorisation is decided on this path and no other.
3. The per-IP limit (429 + ``Retry-After``): before credentials, so guessing them is slow
   (admission.py, over limits.RateLimits).
4. Credentials (auth.Authenticator): 400 if ambiguous, 401 if missing or bad, 403 without the
   route's scopes; public routes need none (admission.py).
5. The per-caller limit (429 + ``Retry-After``) (admission.py).
6. The body: ``Content-Length`` over the limit is refused before a byte is read (413), a body
   that grows past it while read too; JSON only (415); an object (400) (body.py).
7. Arguments mapped and checked against the method's signature (400 naming the argument)
   (mapping.ArgumentMapper).
8. The call, through a meshkit ``Client`` (balancing, breakers, retries, deadline), with the
   caller's identity in metadata (``auth-subject``, ``auth-scopes``, ``auth-method``) set here
   and only here: no request header reaches metadata unless ``forward_headers`` names it
   (call.py; the clients and their policy: clients.py).
9. The answer: the result as JSON with the route's status, or the call's status mapped to HTTP
   (mapping.HTTP_STATUS) with ``{"code", "message", "request_id"}`` (call.py; answers and
   errors are written by asgi.py).

Around them: the limit of requests in progress (503), the access log line and metrics of every
request (``_done``), and a SERVER span per request when tracing (tracing.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# ``name as name``: re-exported, so what this module defined before the steps moved out of it
# is still importable from here.
from meshkit.gateway.admission import authenticate, client_address, take
from meshkit.gateway.asgi import Receive as Receive
from meshkit.gateway.asgi import Refusal, answer, error, header
from meshkit.gateway.asgi import Scope as Scope
from meshkit.gateway.asgi import Send as Send
from meshkit.gateway.auth import Authenticator
from meshkit.gateway.binding import Bound, bind_routes
from meshkit.gateway.binding import load_services as load_services
from meshkit.gateway.body import read_body
from meshkit.gateway.call import call_and_answer, call_metadata
from meshkit.gateway.clients import GATEWAY_POLICY as GATEWAY_POLICY
from meshkit.gateway.clients import gateway_policy, make_clients
from meshkit.gateway.config import GatewayConfig
from meshkit.gateway.docs import ASSETS_PREFIX
from meshkit.gateway.headers import cors_headers, origin_allowed, preflight_headers, request_id_of
from meshkit.gateway.limits import RateLimits
from meshkit.gateway.mapping import BadRequest, query_params
from meshkit.gateway.metrics import GatewayMetrics
from meshkit.gateway.pages import Pages, is_docs
from meshkit.gateway.routing import BadPath, NoRoute, Router, Template, split_path
from meshkit.gateway.tracing import HttpTracing as HttpTracing
from meshkit.policy import Policy
from meshkit.rpc.client import Client
from meshkit.rpc.service import MethodSpec

log = logging.getLogger("meshkit.gateway")
access = logging.getLogger("meshkit.gateway.access")


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
        self.router: Router[Bound]
        self._specs: dict[tuple[str, str], MethodSpec | None]
        self.router, self._specs = bind_routes(config, self.services)
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
        self._pages = Pages(config, self.openapi)
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

    # -- lifecycle -------------------------------------------------------------------------------
    async def startup(self) -> None:
        if self._clients is not None:
            return
        policy = self.policy()
        self._clients = make_clients(self.config, self._client_middleware, policy, self._own_clients)

    def policy(self) -> Policy:
        """The policy of the gateway's calls: the config's ``policy`` file, else GATEWAY_POLICY."""
        return gateway_policy(self.config, self._base)

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
        request_id = request_id_of(headers)
        out_headers: list[tuple[bytes, bytes]] = [(b"x-request-id", request_id.encode())]
        origin = header(headers, b"origin")
        cors = self.config.cors
        cors_allowed = origin is not None and cors is not None and origin_allowed(cors.allow_origins, origin)
        if cors_allowed:
            assert origin is not None
            out_headers.extend(cors_headers(cors, origin))  # on every answer, a 503 included
        if scope.get("meshkit.disconnected"):  # a pipelined request whose client has already left
            self._done(scope, "disconnected", 499, start, request_id)
            return
        limit = self.config.gateway.max_requests_in_progress
        if self.in_progress >= limit:
            # Past this, each request only adds memory and latency for all of them: refuse at
            # once, cheaply, and say when to come back.
            out_headers.append((b"retry-after", b"1"))
            message = f"the gateway is handling its limit of {limit} requests; retry shortly"
            await error(send, 503, "UNAVAILABLE", message, request_id, out_headers)
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
            if cors_allowed and header(headers, b"access-control-request-method") is not None:
                out_headers.extend(preflight_headers(self.config.cors))
                await answer(send, 204, b"", out_headers)
                self._done(scope, "preflight", 204, start, request_id)
                return
            if not cors_allowed:
                await error(send, 403, "PERMISSION_DENIED", "origin not allowed", request_id, out_headers)
                self._done(scope, "preflight", 403, start, request_id)
                return
        raw_path = _relative_raw_path(scope)
        if self.config.gateway.openapi and method in ("GET", "HEAD") and is_docs(raw_path):
            path = raw_path.decode("latin-1")
            status = await self._pages.serve(path, send, out_headers, method == "HEAD", request_id)
            label = "GET /docs/assets" if path.startswith(ASSETS_PREFIX) else f"GET {path}"
            self._done(scope, label, status, start, request_id)
            return
        template_text = "unmatched"
        status = 500
        try:
            status, template_text = await self._route(scope, raw_path, receive, send, headers, request_id, out_headers)
        except Refusal as refusal:
            status = refusal.status
            extra = out_headers + refusal.headers
            await error(send, refusal.status, refusal.code, refusal.message, request_id, extra)
            template_text = refusal.template or template_text
        except Exception:
            log.exception("request %s failed", request_id)
            status = 500
            await error(send, 500, "INTERNAL", "internal gateway error", request_id, out_headers)
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
            raise Refusal(400, "INVALID_ARGUMENT", f"bad path: {exc}") from None
        try:
            bound, template, params = self.router.match(method, segments)
        except NoRoute as exc:
            if exc.allowed:
                allowed = exc.allowed + (["HEAD"] if "GET" in exc.allowed else [])
                allow = ", ".join(sorted(allowed)).encode()
                raise Refusal(405, "UNIMPLEMENTED", "method not allowed", [(b"allow", allow)]) from None
            raise Refusal(404, "NOT_FOUND", "no route for this path") from None
        route = bound.route
        label = scope["meshkit.route"] = f"{route.method} {template.text}"  # read if the client leaves
        try:
            per_ip = self.limits.per_ip
            if per_ip is not None:
                address = client_address(scope, headers, self.config.gateway.trust_forwarded)
                await take(per_ip.take(address), "address")
            identity = authenticate(self.auth, headers, route)
            per_key = self.limits.per_key
            if per_key is not None and identity is not None:
                await take(per_key.take(identity.subject), "caller")
            body = await read_body(receive, headers, method, self._max_body, self.config.gateway.body_timeout)
            args = bound.mapper.build(params, query_params(scope.get("query_string", b"")), body, route.body)
        except Refusal as refusal:
            refusal.template = label
            raise
        except BadRequest as exc:
            raise Refusal(exc.status, "INVALID_ARGUMENT", exc.message, template=label) from None
        metadata = call_metadata(self._forward, headers, identity, request_id)
        client = self._clients.get(route.service) if self._clients is not None else None
        if client is None:
            raise Refusal(503, "UNAVAILABLE", f"no client for service {route.service}", template=label)
        timeout = route.timeout if route.timeout is not None else self.config.gateway.call_timeout
        status = await call_and_answer(
            send,
            client=client,
            route=route,
            args=args,
            metadata=metadata,
            timeout=timeout,
            method=method,
            request_id=request_id,
            out_headers=out_headers,
            label=label,
        )
        return status, label

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


__all__ = ["Bound", "GatewayApp", "Template"]
