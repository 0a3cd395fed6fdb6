"""Review of the gateway's body handling: a JSON body nested deeper than msgspec decodes.

``GatewayApp._body`` catches ``msgspec.DecodeError`` only, but msgspec reports a body nested past
the interpreter's recursion limit (``[[[[...`` a thousand deep: 2 KB) with ``RecursionError``: the
gateway answers 500 "internal gateway error" and logs a traceback, for any caller of a public
POST route (and any authenticated one elsewhere), as often as it likes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from meshkit import Server
from meshkit.gateway import GatewayApp, GatewayServer, parse
from tests.gateway.conftest import Keys, config_text
from tests.gateway.services import Orders


@asynccontextmanager
async def _gateway(keys_dir: Path, jwt_section: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """tests/gateway/conftest.py's gateway (its routes, API key and RS256 JWTs), with the keys in
    ``keys_dir`` (a Keys of the test's own: the conftest's session ``keys`` fixture is per module)."""
    async with Server([Orders()]) as backend:
        config = parse(config_text(backend.address, keys_dir, jwt_section=jwt_section))
        async with GatewayServer(GatewayApp(config)) as gw, httpx.AsyncClient(base_url=f"http://{gw.address}") as http:
            http.gateway = gw  # type: ignore[attr-defined]
            yield http


async def test_a_deeply_nested_json_body_is_a_400_not_a_500(tmp_path: Path) -> None:
    Keys(tmp_path)  # the public key the config names
    body = b"[" * 1000 + b"]" * 1000
    async with _gateway(tmp_path) as http:
        r = await http.post("/api/fail/5", content=body, headers={"content-type": "application/json"})  # public
    assert r.status_code == 400, r.text  # today: 500
