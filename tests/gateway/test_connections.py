"""Slow and idle connections are closed; the gateway mounts in another ASGI app; limits shared
through the real Redis."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from meshkit import Server
from meshkit.gateway import GatewayApp, GatewayServer, parse
from tests.gateway import helpers
from tests.gateway.helpers import closed_by_peer, http_client, orders_config, serving
from tests.gateway.services import Orders


def _timeouts(header_timeout: float, idle_timeout: float) -> str:
    return f"header_timeout = {header_timeout}\nidle_timeout = {idle_timeout}"


async def test_a_request_head_that_never_ends_is_cut_off_and_others_are_served() -> None:
    async with serving(gateway=_timeouts(header_timeout=0.3, idle_timeout=30)) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"GET /orders/1 HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and never the rest
        await writer.drain()
        async with http_client(gw) as http:
            assert (await http.get("/orders/1")).status_code == 200  # others are served meanwhile
        assert await closed_by_peer(reader, within=10)
        writer.close()
        silent, silent_writer = await asyncio.open_connection("127.0.0.1", gw.port)  # sends nothing
        assert await closed_by_peer(silent, within=10)
        silent_writer.close()


async def test_an_idle_kept_alive_connection_is_closed() -> None:
    async with serving(gateway=_timeouts(header_timeout=10, idle_timeout=0.3)) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(b"GET /orders/1 HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert await closed_by_peer(reader, within=10)
        writer.close()


async def test_the_gateway_mounts_under_a_prefix_in_another_asgi_app() -> None:
    async with Server([Orders()]) as backend:
        gateway = GatewayApp(
            parse(orders_config(backend.address, gateway=_timeouts(header_timeout=10, idle_timeout=5)))
        )
        async with helpers.mounted(gateway) as server, http_client(server) as http:
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
        extra = '[auth]\napi_keys = [{ name = "ci-shared", key = "shared-key-0123456789", scopes = ["r"] }]\n'
        extra += f'[limits]\nredis = "{url}"\nper_key = {{ rate = 0.001, burst = 3 }}\n'
        text = orders_config(backend.address, gateway=_timeouts(10, 5), route='scopes = ["r"]', extra=extra)
        config = parse(text)
        async with GatewayServer(GatewayApp(config)) as one, GatewayServer(GatewayApp(config)) as two:
            headers = {"x-api-key": "shared-key-0123456789"}
            async with httpx.AsyncClient() as http:
                statuses = []
                for gw in (one, two, one, two, one):
                    statuses.append((await http.get(f"http://{gw.address}/orders/1", headers=headers)).status_code)
    assert statuses == [200, 200, 200, 429, 429]  # one bucket of 3 for both gateways
