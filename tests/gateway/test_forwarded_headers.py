"""What reaches a call's metadata from an HTTP request:

- a forwarded header too big for the backend's metadata limit is the sender's fault (4xx): it
  neither fails another caller's call in flight on the shared backend connection nor, sent again
  and again, opens the breaker for every caller; one too big for a frame is a 4xx as well;
- the API-key header (the caller's secret) and ``caller`` (the identity per-caller policies key
  on, ``gateway`` for the gateway's client) are never forwarded: the config refuses them, and a
  request carrying them does not pass them on;
- a granted scope that contains a space does not become two scopes in ``auth-scopes``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshkit import Server, Service, current_context, rpc
from meshkit.gateway import GatewayApp, GatewayConfigError, GatewayServer, parse
from tests.gateway.conftest import API_KEY, Keys
from tests.gateway.conftest import gateway_with_keys as _gateway


class Held(Service, name="held"):
    """``hold`` answers once ``release`` is set (a call in flight for as long as a test needs);
    ``seen`` returns the call's metadata."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    @rpc
    async def hold(self) -> str:
        self.entered.set()
        await self.release.wait()
        return "done"

    @rpc
    async def seen(self) -> dict[str, Any]:
        ctx = current_context()
        assert ctx is not None
        return dict(ctx.metadata)


CONFIG = """
[gateway]
port = 0
forward_headers = {forward}
[targets]
held = "{address}"
[auth]
api_keys = [{{ name = "ci", key = "{key}", scopes = ["r"] }}]
[[routes]]
method = "GET"
path = "/hold"
call = "held.hold"
public = true
[[routes]]
method = "GET"
path = "/seen"
call = "held.seen"
public = true
"""


def _load(forward: str) -> object:
    """The config forwarding ``forward``, parsed (GatewayConfigError if refused)."""
    return parse(CONFIG.format(address="127.0.0.1:1", forward=forward, key=API_KEY))


@asynccontextmanager
async def _serving(service: Held, forward: str = '["x-tenant"]') -> AsyncIterator[httpx.AsyncClient]:
    async with Server([service]) as backend:
        config = parse(CONFIG.format(address=backend.address, forward=forward, key=API_KEY))
        async with GatewayServer(GatewayApp(config)) as gw:
            async with httpx.AsyncClient(base_url=f"http://{gw.address}", timeout=30) as http:
                yield http


async def test_an_oversized_forwarded_header_does_not_fail_another_callers_call() -> None:
    service = Held()
    async with _serving(service) as http:
        victim = asyncio.create_task(http.get("/hold"))  # another caller's call, in flight
        await service.entered.wait()
        attacker = await http.get("/seen", headers={"x-tenant": "x" * 20_000})
        service.release.set()
        answered = await victim
    assert answered.status_code == 200, answered.text
    assert 400 <= attacker.status_code < 500, attacker.text  # the request is the client's fault


async def test_oversized_forwarded_headers_do_not_open_the_breaker_for_every_caller() -> None:
    async with _serving(Held()) as http:
        before = (await http.get("/seen")).status_code
        attacks = [(await http.get("/seen", headers={"x-tenant": "x" * 20_000})).status_code for _ in range(30)]
        after = await http.get("/seen")  # another caller, an ordinary request
    assert before == 200
    assert after.status_code == 200, (attacks, after.text)


async def test_a_forwarded_header_too_big_for_a_frame_is_a_client_error_not_a_500() -> None:
    async with _serving(Held()) as http:
        try:
            r = await http.get("/seen", headers={"x-tenant": "x" * 70_000})
        except httpx.RemoteProtocolError:
            return  # a head over gateway.max_head_bytes: 431 and the connection closed mid-upload
        after = await http.get("/seen")
    assert 400 <= r.status_code < 500, r.text
    assert after.status_code == 200


async def test_the_api_key_header_is_never_forwarded_to_the_service() -> None:
    with pytest.raises(GatewayConfigError, match=r"may not forward the API key header \(x-api-key\)"):
        _load('["x-tenant", "x-api-key"]')
    async with _serving(Held()) as http:  # and a request carrying it does not pass it on
        r = await http.get("/seen", headers={"x-api-key": API_KEY})
    assert r.status_code == 200, r.text
    assert API_KEY not in r.json().values()


async def test_an_http_client_cannot_choose_the_caller_the_service_sees() -> None:
    with pytest.raises(GatewayConfigError, match="may not forward caller"):
        _load('["x-tenant", "caller"]')
    async with _serving(Held()) as http:
        r = await http.get("/seen", headers={"caller": "inventory"})
    assert r.status_code == 200, r.text
    assert r.json()["caller"] == "gateway"


async def test_a_scope_with_a_space_cannot_become_two_scopes_in_metadata(tmp_path: Path) -> None:
    keys = Keys(tmp_path)
    token = keys.token(scope=["orders:read", "reports admin"])  # granted: "orders:read", "reports admin"
    async with _gateway(tmp_path) as http:
        plain = await http.get("/api/whoami", headers={"authorization": f"Bearer {keys.token(scope='orders:read')}"})
        r = await http.get("/api/whoami", headers={"authorization": f"Bearer {token}"})
    assert plain.status_code == 200 and plain.json()["auth-scopes"] == "orders:read"  # the control
    if r.status_code == 200:
        assert "admin" not in r.json()["auth-scopes"].split()
    else:
        assert r.status_code == 401  # or such a token is refused
