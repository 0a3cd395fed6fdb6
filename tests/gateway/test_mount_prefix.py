"""The gateway mounted under a prefix in another ASGI app (``root_path``): ``/openapi.json`` and
``/docs`` are served under the prefix like the routes, and a percent-encoded spelling of the
prefix (``/%67w/...`` for ``/gw/...``, which the parent app matched decoded) is stripped like the
plain one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from meshkit import Server
from meshkit.gateway import GatewayApp, GatewayServer, parse
from tests.gateway.services import Orders

CONFIG = """
[gateway]
port = 0
services = ["tests.gateway.services:Orders"]
[targets]
orders = "{address}"
[[routes]]
method = "GET"
path = "/orders/{{order_id}}"
call = "orders.get"
public = true
"""


@asynccontextmanager
async def _mounted() -> AsyncIterator[GatewayServer]:
    """The gateway mounted at /gw in a parent app (as test_connections.py does it)."""
    async with Server([Orders()]) as backend:
        gateway = GatewayApp(parse(CONFIG.format(address=backend.address)))

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


async def test_the_openapi_document_is_served_under_the_mount_prefix() -> None:
    async with _mounted() as server, httpx.AsyncClient(base_url=f"http://{server.address}") as http:
        api = await http.get("/gw/orders/1")
        document = await http.get("/gw/openapi.json")
        docs = await http.get("/gw/docs")
    assert api.status_code == 200  # the routes are served under the prefix
    assert document.status_code == 200, document.text
    assert docs.status_code == 200, docs.text


async def test_a_percent_encoded_mount_prefix_is_stripped_like_the_plain_one() -> None:
    async with _mounted() as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /%67w/orders/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read()
        writer.close()
    assert answer.startswith(b"HTTP/1.1 200") or answer.startswith(b"HTTP/1.1 400"), answer
