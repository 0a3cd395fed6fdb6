"""A failure inside reaches an HTTP caller without its details: a handler's unexpected exception is
not described (no exception name or text), and an unreachable backend's address is not revealed.
The details belong in the gateway's log.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from meshkit.gateway import GatewayApp, GatewayServer, parse
from tests.gateway.conftest import Keys, config_text
from tests.gateway.conftest import gateway_with_keys as _gateway


async def test_a_handlers_unexpected_exception_is_not_described_to_the_http_caller(tmp_path: Path) -> None:
    Keys(tmp_path)  # the public key the config names
    async with _gateway(tmp_path) as http:
        r = await http.post("/api/fail/17")  # StatusCode(17) raises ValueError inside the handler
    assert r.status_code == 500
    assert "ValueError" not in r.json()["message"], r.json()


async def test_an_unreachable_backend_does_not_reveal_its_address(tmp_path: Path) -> None:
    Keys(tmp_path)  # the public key the config names
    config = parse(config_text("127.0.0.1:1", tmp_path))  # nothing listens on port 1
    config.gateway.call_timeout = 2.0
    async with GatewayServer(GatewayApp(config)) as gw, httpx.AsyncClient(base_url=f"http://{gw.address}") as http:
        r = await http.get("/public/orders/1")
    assert r.status_code == 503
    assert "127.0.0.1:1" not in r.text, r.json()
