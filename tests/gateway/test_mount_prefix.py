"""The gateway mounted under a prefix in another ASGI app (``root_path``): ``/openapi.json`` and
``/docs`` are served under the prefix like the routes, and a percent-encoded spelling of the
prefix (``/%67w/...`` for ``/gw/...``, which the parent app matched decoded) is stripped like the
plain one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from meshkit import Server
from meshkit.gateway import GatewayApp, GatewayServer, parse
from tests.gateway.helpers import http_client, mounted, orders_config
from tests.gateway.services import Orders


@asynccontextmanager
async def _mounted() -> AsyncIterator[GatewayServer]:
    """The gateway mounted at /gw in a parent app (helpers.mounted, as test_connections.py does it)."""
    async with Server([Orders()]) as backend, mounted(GatewayApp(parse(orders_config(backend.address)))) as server:
        yield server


async def test_the_openapi_document_is_served_under_the_mount_prefix() -> None:
    async with _mounted() as server, http_client(server) as http:
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
