"""``--admin-port`` on the served processes: /metrics counts the calls, /readyz says ready."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("command", [["registry"], ["run", "tests.policy.services:Stock"]])
def test_admin_port_serves_metrics_and_readiness(command: list[str]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "meshkit", *command, "--port", "0", "--admin-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(2)]
        admin = re.search(r"admin on (http://\S+)", "".join(lines))
        assert admin, lines
        base = admin.group(1)
        with urllib.request.urlopen(f"{base}/readyz", timeout=5) as ready:
            assert ready.status == 200
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as metrics:
            text = metrics.read().decode()
        assert "meshkit_breaker_state" in text and "meshkit_rpc_server_in_flight" in text
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
