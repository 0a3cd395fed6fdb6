"""Slow and idle connections are closed; the gateway mounts in another ASGI app; limits shared
through the real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from meshkit import Server
from meshkit.gateway import GatewayApp, GatewayServer, parse
from tests.gateway.services import Orders

CONFIG = """
[gateway]
port = 0
header_timeout = {header_timeout}
idle_timeout = {idle_timeout}
services = ["tests.gateway.services:Orders"]
[targets]
orders = "{address}"
[[routes]]
method = "GET"
path = "/orders/{{order_id}}"
call = "orders.get"
public = true
"""


async def _closed_by_peer(reader: asyncio.StreamReader, within: float) -> bool:
    """Whether the server closes the connection (EOF) within ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            while await reader.read(4096):
                pass
        return True
    except TimeoutError:
        return False


async def test_a_request_head_that_never_ends_is_cut_off_and_others_are_served() -> None:
    async with Server([Orders()]) as backend:
        config = parse(CONFIG.format(address=backend.address, header_timeout=0.3, idle_timeout=30))
        async with GatewayServer(GatewayApp(config)) as gw:
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            writer.write(b"GET /orders/1 HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and never the rest
            await writer.drain()
            async with httpx.AsyncClient(base_url=f"http://{gw.address}") as http:
                assert (await http.get("/orders/1")).status_code == 200  # others are served meanwhile
            assert await _closed_by_peer(reader, within=10)
            writer.close()
            silent, silent_writer = await asyncio.open_connection("127.0.0.1", gw.port)  # sends nothing
            assert await _closed_by_peer(silent, within=10)
            silent_writer.close()


async def test_an_idle_kept_alive_connection_is_closed() -> None:
    async with Server([Orders()]) as backend:
        config = parse(CONFIG.format(address=backend.address, header_timeout=10, idle_timeout=0.3))
        async with GatewayServer(GatewayApp(config)) as gw:
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            writer.write(b"GET /orders/1 HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200")
            assert await _closed_by_peer(reader, within=10)
            writer.close()


async def test_the_gateway_mounts_under_a_prefix_in_another_asgi_app() -> None:
    async with Server([Orders()]) as backend:
        gateway = GatewayApp(parse(CONFIG.format(address=backend.address, header_timeout=10, idle_timeout=5)))

        async def outer(scope: dict[str, Any], receive: Any, send: Any) -> None:
            """A parent app that mounts the gateway at /gw, the way Starlette's Mount does."""
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
        async with server, httpx.AsyncClient(base_url=f"http://{server.address}") as http:
            mounted = await http.get("/gw/orders/1")
            outside = await http.get("/orders/1")
    assert mounted.status_code == 200 and mounted.json()["item"] == "apple"
    assert outside.status_code == 418


async def test_per_caller_limits_are_shared_by_gateways_through_redis() -> None:
    import redis.asyncio as aioredis

    url = "redis://127.0.0.1:6379/0"
    probe = aioredis.from_url(url)
    try:
        await probe.ping()
    except Exception:
        pytest.fail("Redis is not running on 127.0.0.1:6379; start it with: bash scripts/engines.sh")
    await probe.delete("meshkit:gateway:key:ci-shared")
    await probe.aclose()
    async with Server([Orders()]) as backend:
        text = CONFIG.format(address=backend.address, header_timeout=10, idle_timeout=5).replace(
            "public = true\n", 'scopes = ["r"]\n'
        )
        text += '[auth]\napi_keys = [{ name = "ci-shared", key = "shared-key-0123456789", scopes = ["r"] }]\n'
        text += f'[limits]\nredis = "{url}"\nper_key = {{ rate = 0.001, burst = 3 }}\n'
        config = parse(text)
        async with GatewayServer(GatewayApp(config)) as one, GatewayServer(GatewayApp(config)) as two:
            headers = {"x-api-key": "shared-key-0123456789"}
            async with httpx.AsyncClient() as http:
                statuses = []
                for gw in (one, two, one, two, one):
                    statuses.append((await http.get(f"http://{gw.address}/orders/1", headers=headers)).status_code)
    assert statuses == [200, 200, 200, 429, 429]  # one bucket of 3 for both gateways
