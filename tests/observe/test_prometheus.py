"""A real Prometheus (started by scripts/engines.sh on 127.0.0.1:19090) scrapes a running service;
the request counter comes back through PromQL with the expected labels and value."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from meshkit import Client, Server
from meshkit.observe import AdminHttp, RpcMetrics
from tests.policy.services import Stock

PROMETHEUS = "http://127.0.0.1:19090"
TARGETS = Path("/tmp/meshkit-prometheus/targets")


def _require_prometheus() -> None:
    try:
        socket.create_connection(("127.0.0.1", 19090), timeout=1).close()
    except OSError:
        pytest.fail("Prometheus is not running on 127.0.0.1:19090; start it with: bash scripts/engines.sh")


async def test_prometheus_scrapes_the_admin_port_and_promql_sees_the_calls() -> None:
    _require_prometheus()
    registry = CollectorRegistry()
    metrics = RpcMetrics(registry)
    admin = AdminHttp(registry)
    await admin.start()
    run = uuid.uuid4().hex[:12]
    target = TARGETS / f"test-{run}.json"
    try:
        async with Server([Stock()], middleware=[metrics.middleware("server")]) as server:
            async with Client(target=server.address) as client:
                for i in range(5):
                    await client.proxy(Stock).peek(str(i))
            target.write_text(json.dumps([{"targets": [f"127.0.0.1:{admin.port}"], "labels": {"run": run}}]))
            query = f'meshkit_rpc_server_requests_total{{run="{run}"}}'
            deadline = time.monotonic() + 45
            result: list[dict[str, object]] = []
            async with httpx.AsyncClient(base_url=PROMETHEUS, timeout=5) as http:
                while time.monotonic() < deadline:
                    answer = (await http.get("/api/v1/query", params={"query": query})).json()
                    assert answer["status"] == "success", answer
                    result = answer["data"]["result"]
                    if result:
                        break
                    await asyncio.sleep(0.5)  # waiting for the next scrape, not for correctness
            assert result, f"Prometheus did not scrape 127.0.0.1:{admin.port} within 45 s"
            (series,) = result
            labels = series["metric"]
            assert isinstance(labels, dict)
            assert (labels["service"], labels["method"], labels["code"], labels["job"]) == (
                "stock",
                "peek",
                "OK",
                "meshkit",
            )
            assert float(series["value"][1]) == 5  # type: ignore[index]
    finally:
        target.unlink(missing_ok=True)
        await admin.stop()
