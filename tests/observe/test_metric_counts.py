"""Regressions from the review of meshkit.observe: each test pinned a bug before its fix."""

from __future__ import annotations

import asyncio
import gc
import os

import pytest
from prometheus_client import CollectorRegistry

from meshkit import Server, Service, rpc
from meshkit.discovery.health import HealthThresholds
from meshkit.observe import AdminHttp, RpcMetrics
from meshkit.observe.admin import servers_ready
from meshkit.protocol.frames import FrameType, encode_frame
from meshkit.protocol.metadata import encode_metadata
from meshkit.serde import msgpack_encode
from tests.policy.services import Stock


class Sleepy(Service, name="obsrev_sleepy"):
    @rpc
    async def nap(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def test_server_counts_its_own_deadline_expiry_as_deadline_exceeded() -> None:
    registry = CollectorRegistry()
    metrics = RpcMetrics(registry)
    labels = {"service": "obsrev_sleepy", "method": "nap"}
    async with Server([Sleepy()], middleware=[metrics.middleware("server")]) as server:
        md = encode_metadata({"service": "obsrev_sleepy", "method": "nap", "deadline": 50})
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(encode_frame(FrameType.REQUEST, 1, msgpack_encode({"seconds": 5.0}), md))
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(4096), 5)
            assert b"ran past its deadline" in answer  # the caller is told DEADLINE_EXCEEDED
            for _ in range(200):
                if registry.get_sample_value("meshkit_rpc_server_in_flight", labels) == 0:
                    break
                await asyncio.sleep(0.01)
        finally:
            writer.close()
    assert registry.get_sample_value("meshkit_rpc_server_requests_total", {**labels, "code": "DEADLINE_EXCEEDED"}) == 1


def test_policy_counters_never_decrease() -> None:
    from meshkit.policy import Policy, PolicyConfig, Switches

    registry = CollectorRegistry()
    RpcMetrics(registry)
    policy = Policy(PolicyConfig(), switches=Switches())
    policy.rejected["limit"] += 5
    policy.retries += 3
    before = registry.get_sample_value("meshkit_policy_rejections_total", {"reason": "limit"})
    retries_before = registry.get_sample_value("meshkit_policy_actions_total", {"action": "retry"})
    del policy
    gc.collect()
    after = registry.get_sample_value("meshkit_policy_rejections_total", {"reason": "limit"}) or 0.0
    retries_after = registry.get_sample_value("meshkit_policy_actions_total", {"action": "retry"}) or 0.0
    assert after >= before and retries_after >= retries_before  # type: ignore[operator]


async def test_readyz_follows_the_servers_health_checks() -> None:
    server = Server(
        [Stock()],
        registry="memory://obsrev-readyz",
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


async def test_demo_otlp_endpoint_wins_and_leaves_the_environment_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    from meshkit.demo import runner
    from meshkit.observe import tracing

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://elsewhere.invalid:4318/v1/traces")
    saved = dict(os.environ)
    seen: list[str] = []

    def fake_spawn(name: str, args: list[str], env: dict[str, str] | None = None, timeout: float = 15.0) -> None:
        # The child's OTLP exporter resolves its endpoint from os.environ plus ``env``.
        with monkeypatch.context() as m:
            for key, value in (env or {}).items():
                m.setenv(key, value)
            seen.append(OTLPSpanExporter()._endpoint)
        raise RuntimeError("stop the demo here")

    monkeypatch.setattr(runner, "_spawn", fake_spawn)
    monkeypatch.setattr(tracing, "configure", lambda *a, **k: None)  # no global provider in the test process
    try:
        with pytest.raises(RuntimeError, match="stop the demo here"):
            await runner._main(1.0, 1, 1.0, None, None, otlp="http://collector.test:4318")  # type: ignore[arg-type]
        changed = {k: v for k, v in os.environ.items() if saved.get(k) != v}
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert seen and seen[0].startswith("http://collector.test:4318"), seen
    assert changed == {}, changed
