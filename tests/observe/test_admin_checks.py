"""The admin endpoint's readiness: ``/readyz`` follows the servers' health checks, and a check that
raises is an answer (5xx), not a dropped connection."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from meshkit import Server
from meshkit.discovery.health import HealthThresholds
from meshkit.observe import AdminHttp
from meshkit.observe.admin import servers_ready
from tests.policy.services import Stock


async def test_readyz_follows_the_servers_health_checks() -> None:
    server = Server(
        [Stock()],
        registry="memory://readyz",
        health=HealthThresholds(max_loop_lag=None, max_rss_bytes=1, interval=0.01),  # always over 1 byte
        middleware=[],
    )
    async with server:
        for _ in range(200):
            if not server._health.healthy:  # type: ignore[union-attr]
                break
            await asyncio.sleep(0.01)
        assert not server._health.healthy  # type: ignore[union-attr]  # the monitor saw it
        ready, _ = servers_ready([server])()
    assert ready is False


async def test_admin_answers_500_when_a_check_raises() -> None:
    def broken() -> tuple[bool, list[str]]:
        raise RuntimeError("check failed")

    admin = AdminHttp(CollectorRegistry(), ready=broken)
    await admin.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", admin.port)
        writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    finally:
        await admin.stop()
    assert data.startswith(b"HTTP/1.1 5"), data
