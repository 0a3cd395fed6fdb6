"""The setup that gateway tests of one route repeat: its config, a backend with a gateway in front
of it, a client for the gateway, the gateway mounted in a parent app, and waiting for a close.

(conftest.py's ``gateway`` fixture is the full one, with auth and all of Orders' routes; these
are for the tests that need one public route and a real server.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx

from meshkit import Server
from meshkit.gateway import GatewayApp, GatewayServer, parse
from meshkit.rpc.middleware import Middleware
from meshkit.rpc.service import Service
from tests.gateway.services import Orders


def orders_config(address: str, *, gateway: str = "", route: str = "public = true", extra: str = "") -> str:
    """A config of one route, ``GET /orders/{order_id}`` calling ``orders.get`` at ``address``:
    ``gateway`` adds lines to its ``[gateway]``, ``route`` is the route's access line
    (``public = true`` unless told), ``extra`` comes after the route (more routes, sections)."""
    return f"""
[gateway]
port = 0
{gateway}
services = ["tests.gateway.services:Orders"]
[targets]
orders = "{address}"
[[routes]]
method = "GET"
path = "/orders/{{order_id}}"
call = "orders.get"
{route}
{extra}
"""


@asynccontextmanager
async def serving(
    services: Sequence[Service] | None = None,
    *,
    middleware: Sequence[Middleware] | None = None,
    gateway: str = "",
    route: str = "public = true",
    extra: str = "",
    **app_kwargs: Any,
) -> AsyncIterator[GatewayServer]:
    """A backend serving ``services`` (an Orders unless told) with ``middleware``, and a gateway of
    ``orders_config(backend, gateway=..., route=..., extra=...)`` in front of it, made with
    ``app_kwargs``; yields the gateway's server (its GatewayApp is ``.app``)."""
    async with Server(list(services) if services is not None else [Orders()], middleware=middleware) as backend:
        config = parse(orders_config(backend.address, gateway=gateway, route=route, extra=extra))
        async with GatewayServer(GatewayApp(config, **app_kwargs)) as gw:
            yield gw


def http_client(gw: GatewayServer) -> httpx.AsyncClient:
    """An HTTP client of the gateway ``gw`` (to enter with ``async with``)."""
    return httpx.AsyncClient(base_url=f"http://{gw.address}")


@asynccontextmanager
async def mounted(gateway: GatewayApp) -> AsyncIterator[GatewayServer]:
    """``gateway`` mounted at /gw in a parent app, the way Starlette's Mount does it (the parent
    answers 418 elsewhere), served; yields the server."""

    async def outer(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/gw/"):
            await gateway({**scope, "root_path": "/gw"}, receive, send)
            return
        if scope["type"] == "lifespan":
            await gateway(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 418, "headers": []})
        await send({"type": "http.response.body", "body": b"outer"})

    server = GatewayServer(gateway)
    server.app = outer  # type: ignore[assignment]
    server.app.config = gateway.config  # type: ignore[attr-defined]
    async with server:
        yield server


async def closed_by_peer(reader: asyncio.StreamReader, within: float) -> bool:
    """Whether the server closes the connection (EOF, or a reset) within ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(4096):
                pass
        return True
    except TimeoutError:
        return False
    except ConnectionError:
        return True
