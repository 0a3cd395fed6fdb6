from __future__ import annotations

import asyncio

import pytest

from meshkit import Client, Server
from meshkit.discovery import open_registry
from meshkit.discovery.health import HealthMonitor, HealthThresholds, Sample, evaluate, rss_bytes
from meshkit.discovery.memory import reset
from tests.rpc.services import Greeter


@pytest.mark.parametrize(
    ("sample", "thresholds", "reasons"),
    [
        (Sample(0.01, 10, 10), HealthThresholds(), []),
        (Sample(1.5, 10, 10), HealthThresholds(), ["event loop lag"]),
        (Sample(1.5, 10, 10), HealthThresholds(max_loop_lag=None), []),
        (Sample(0, 200 << 20, 10), HealthThresholds(max_rss_bytes=100 << 20), ["memory 200 MiB > 100 MiB"]),
        (Sample(0, 0, 1 << 20), HealthThresholds(min_disk_free_bytes=10 << 20), ["disk free 1 MiB < 10 MiB"]),
        (Sample(2, 200 << 20, 0), HealthThresholds(max_rss_bytes=1, min_disk_free_bytes=1), ["lag", "memory", "disk"]),
    ],
)
def test_evaluate(sample: Sample, thresholds: HealthThresholds, reasons: list[str]) -> None:
    got = evaluate(sample, thresholds)
    assert len(got) == len(reasons)
    for text, reason in zip(got, reasons, strict=True):
        assert reason in text


async def test_monitor_reports_only_changes() -> None:
    changes: list[tuple[bool, list[str]]] = []

    async def on_change(healthy: bool, reasons: list[str]) -> None:
        changes.append((healthy, reasons))

    m = HealthMonitor(HealthThresholds(max_loop_lag=0.5), on_change)
    for lag in (0.1, 0.2, 0.9, 1.0, 0.1, 0.1):
        await m.report(lag)
    assert [h for h, _ in changes] == [False, True]
    assert "event loop lag" in changes[0][1][0]


def test_rss_is_measured() -> None:
    assert rss_bytes() > 1 << 20


async def test_unhealthy_server_leaves_rotation() -> None:
    reset()
    healthy = Server([Greeter()], middleware=[], registry="memory://h")
    sick = Server(
        [Greeter()], middleware=[], registry="memory://h", health=HealthThresholds(max_rss_bytes=1, interval=0.02)
    )
    await healthy.start()
    await sick.start()
    registry = open_registry("memory://h")
    try:
        for _ in range(200):
            states = {i.port: i.healthy for i in await registry.resolve("greeter")}
            if states.get(sick.port) is False:
                break
            await asyncio.sleep(0.02)
        assert states == {healthy.port: True, sick.port: False}
        async with Client(registry="memory://h") as c:
            await c.proxy(Greeter).hello("x")
            assert [n.peer.address for n in c._services["greeter"].nodes] == [healthy.address]
    finally:
        await sick.stop(grace=1)
        await healthy.stop(grace=1)
