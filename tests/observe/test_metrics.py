"""Metrics through real calls, read back in the Prometheus text format from the admin port."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from meshkit import Client, RpcError, Server, StatusCode
from meshkit.observe import AdminHttp, RpcMetrics
from meshkit.observe.admin import servers_ready
from tests.policy.services import Stock


async def http_get(port: int, path: str, raw: bytes | None = None) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw if raw is not None else f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_calls_are_counted_timed_and_served_on_the_admin_port() -> None:
    registry = CollectorRegistry()
    metrics = RpcMetrics(registry)
    stock = Stock()
    server = Server([stock], middleware=[metrics.middleware("server")])
    admin = AdminHttp(registry, ready=servers_ready([server]))
    await admin.start()
    status, body = await http_get(admin.port, "/readyz")
    assert status == 503 and "is not serving" in body
    async with server, Client(target=server.address, middleware=[metrics.middleware("client")]) as client:
        proxy = client.proxy(Stock)
        for i in range(3):
            await proxy.peek(str(i))
        stock.error = StatusCode.NOT_FOUND
        with pytest.raises(RpcError):
            await proxy.peek("gone")
        status, body = await http_get(admin.port, "/metrics")
        assert status == 200
        got = samples(body)
        for side in ("server", "client"):
            ok = (f"meshkit_rpc_{side}_requests_total", (("code", "OK"), ("method", "peek"), ("service", "stock")))
            missing = (
                f"meshkit_rpc_{side}_requests_total",
                (("code", "NOT_FOUND"), ("method", "peek"), ("service", "stock")),
            )
            assert got[ok] == 3 and got[missing] == 1
            count = (f"meshkit_rpc_{side}_duration_seconds_count", (("method", "peek"), ("service", "stock")))
            assert got[count] == 4
            bucket = (
                f"meshkit_rpc_{side}_duration_seconds_bucket",
                (("le", "10.0"), ("method", "peek"), ("service", "stock")),
            )
            assert got[bucket] == 4
            assert got[(f"meshkit_rpc_{side}_in_flight", (("method", "peek"), ("service", "stock")))] == 0
        assert any(name == "meshkit_client_connections" and value >= 1 for (name, _), value in got.items())
        assert (await http_get(admin.port, "/readyz"))[0] == 200
        assert await http_get(admin.port, "/healthz") == (200, "ok\n")
        assert (await http_get(admin.port, "/nope"))[0] == 404
        assert (await http_get(admin.port, "", raw=b"POST /metrics HTTP/1.1\r\n\r\n"))[0] == 405
        assert (await http_get(admin.port, "", raw=b"garbage\r\n\r\n"))[0] == 400
    await admin.stop()


async def test_in_flight_gauge_counts_calls_in_progress() -> None:
    registry = CollectorRegistry()
    metrics = RpcMetrics(registry)
    stock = Stock()
    stock.gate = asyncio.Event()
    async with Server([stock], middleware=[metrics.middleware("server")]) as server:
        async with Client(target=server.address) as client:
            held = [asyncio.create_task(client.proxy(Stock).peek(str(i))) for i in range(3)]
            while stock.calls < 3:
                await asyncio.sleep(0.001)
            gauge = registry.get_sample_value("meshkit_rpc_server_in_flight", {"service": "stock", "method": "peek"})
            assert gauge == 3
            stock.gate.set()
            await asyncio.gather(*held)
            assert (
                registry.get_sample_value("meshkit_rpc_server_in_flight", {"service": "stock", "method": "peek"}) == 0
            )


async def test_policy_state_is_exported_at_scrape_time() -> None:
    from meshkit.policy import Limit, Policy, PolicyConfig, ServerRule, Shedding, Switches

    registry = CollectorRegistry()
    RpcMetrics(registry)
    p = Policy(
        PolicyConfig(shedding=Shedding(enabled=True), server={"stock.peek": ServerRule(limit=Limit(rate=1, burst=1))}),
        switches=Switches(),
    )
    async with Server([Stock()], policy=p, middleware=[]) as server, Client(target=server.address) as client:
        await client.proxy(Stock).peek("a")
        with pytest.raises(RpcError):
            await client.proxy(Stock).peek("b")
    assert registry.get_sample_value("meshkit_policy_rejections_total", {"reason": "limit"}) >= 1
    assert registry.get_sample_value("meshkit_shedder_limit") is not None


async def test_dry_run_refusals_and_the_live_revision_are_exported(tmp_path: object) -> None:
    from meshkit.config import ConfigStore, Identity, LivePolicy
    from meshkit.policy import Switches

    registry = CollectorRegistry()
    RpcMetrics(registry)
    store = ConfigStore("memory://metrics")
    revision = await store.put(
        "policy/stock",
        '[shedding]\nenabled = false\n[server."stock.peek"]\nmode = "dry-run"\nlimit = { rate = 1, burst = 1 }\n',
    )
    p = LivePolicy("memory://metrics#policy/stock", identity=Identity("m"), cache_dir=False, switches=Switches())
    labels = {"rule": "server:stock.peek", "reason": "limit"}
    before = registry.get_sample_value("meshkit_policy_would_refuse_total", labels) or 0
    async with Server([Stock()], policy=p, middleware=[]) as server, Client(target=server.address) as client:
        for item in "abc":
            assert await client.proxy(Stock).peek(item) == item  # dry run: nothing refused
        rejected = await store.put("policy/stock", "[server\n")
        while p.last_rejected is None or p.last_rejected["revision"] != rejected:
            await asyncio.sleep(0.01)
        sample = registry.get_sample_value
        assert sample("meshkit_policy_would_refuse_total", labels) == before + 2
        source = "memory://metrics#policy/stock"
        assert sample("meshkit_policy_revision", {"source": source, "gray": "0"}) == revision
        assert sample("meshkit_policy_config_rejections_total", {"source": source}) == 1
