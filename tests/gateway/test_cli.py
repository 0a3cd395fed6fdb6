"""``meshkit gateway --config``: a real process, reached over HTTP, stopped by SIGTERM."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from meshkit import Server
from meshkit.testing import spawn
from tests.gateway.services import Orders


async def test_meshkit_gateway_serves_its_config_and_stops_on_sigterm(tmp_path: Path) -> None:
    async with Server([Orders()]) as backend:
        config = tmp_path / "gateway.toml"
        config.write_text(
            f"""
[gateway]
port = 0
services = ["tests.gateway.services:Orders"]
[targets]
orders = "{backend.address}"
[[routes]]
method = "GET"
path = "/api/orders/{{order_id}}"
call = "orders.get"
public = true
"""
        )
        with spawn(
            [sys.executable, "-m", "meshkit", "gateway", "--config", str(config)],
            ready=r"gateway on (http://\S+)",
            stderr="capture",
            env={"PYTHONPATH": os.getcwd()},
            timeout=30,
        ) as proc:
            assert proc.ready_match is not None
            async with httpx.AsyncClient(base_url=proc.ready_match[1]) as http:
                r = await http.get("/api/orders/1")
            assert r.status_code == 200 and r.json()["item"] == "apple"
            assert proc.stop(grace=10) == 0 and not proc.escalated


def test_a_bad_config_stops_the_gateway_with_the_field_named(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(
        '[targets]\norders = "127.0.0.1:1"\n[[routes]]\nmethod = "GET"\npath = "/x"\ncall = "orders.get"\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "meshkit", "gateway", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "needs credentials" in done.stderr and str(config) in done.stderr
