"""``--admin-port`` on the served processes: /metrics counts the calls, /readyz says ready."""

from __future__ import annotations

import sys
import urllib.request
from pathlib import Path

import pytest

from meshkit.testing import spawn

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("command", [["registry"], ["run", "tests.policy.services:Stock"]])
def test_admin_port_serves_metrics_and_readiness(command: list[str]) -> None:
    with spawn(
        [sys.executable, "-m", "meshkit", *command, "--port", "0", "--admin-port", "0"],
        ready=r"admin on (http://\S+)",
        stderr="discard",
        cwd=ROOT,
        timeout=30,
    ) as proc:
        assert proc.ready_match is not None
        base = proc.ready_match[1]
        with urllib.request.urlopen(f"{base}/readyz", timeout=5) as ready:
            assert ready.status == 200
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as metrics:
            text = metrics.read().decode()
        assert "meshkit_breaker_state" in text and "meshkit_rpc_server_in_flight" in text
        assert proc.stop(grace=30) == 0 and not proc.escalated
