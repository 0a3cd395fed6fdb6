"""The Grafana dashboard asks only for metrics the code exports, and real Prometheus parses
every one of its queries."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from meshkit.observe import RpcMetrics

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "meshkit-dashboard.json"
#: Names Prometheus itself provides.
BUILTIN = {"up"}


def exported_names() -> set[str]:
    registry = CollectorRegistry()
    RpcMetrics(registry)
    names: set[str] = set()
    for family in registry.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}.get(family.type, [""])
        names.update(family.name + suffix for suffix in suffixes)
    return names


def queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def test_every_metric_the_dashboard_reads_is_exported() -> None:
    exported = exported_names()
    assert "meshkit_rpc_server_requests_total" in exported and "meshkit_breaker_state" in exported
    used = set()
    for expr in queries():
        without_labels = re.sub(r"\{[^}]*\}", "", expr)
        used.update(name for name in re.findall(r"\b(meshkit_[a-z_]+|up)\b", without_labels))
    assert used, "the dashboard has no queries"
    assert used <= exported | BUILTIN, f"not exported: {sorted(used - exported - BUILTIN)}"
    assert len(queries()) >= 10


def test_prometheus_parses_every_dashboard_query() -> None:
    try:
        socket.create_connection(("127.0.0.1", 19090), timeout=1).close()
    except OSError:
        pytest.fail("Prometheus is not running on 127.0.0.1:19090; start it with: bash scripts/engines.sh")
    with httpx.Client(base_url="http://127.0.0.1:19090", timeout=5) as http:
        for expr in queries():
            answer = http.get("/api/v1/query", params={"query": expr}).json()
            assert answer["status"] == "success", (expr, answer)


def test_the_example_scrape_config_is_valid_for_promtool() -> None:
    import shutil
    import subprocess

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing (Debian's prometheus package); install it with: bash scripts/engines.sh")
    config = ROOT / "deploy" / "prometheus" / "prometheus.yml"
    check = subprocess.run([promtool, "check", "config", str(config)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
