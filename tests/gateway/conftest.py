"""A gateway in front of a real meshkit server, on loopback, reached over real HTTP."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from meshkit import Server
from meshkit.gateway import GatewayApp, GatewayServer, parse
from tests.gateway.services import Orders

HS_SECRET = "a-test-secret-that-is-long-enough-for-hs256"
API_KEY = "key-for-the-ci-caller-0123456789"
ISSUER = "https://auth.test"
AUDIENCE = "meshkit-gateway"


class Keys:
    def __init__(self, tmp: Path) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rsa_public_pem = self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.ec_public_pem = self.ec.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        (tmp / "rsa.pub").write_bytes(self.rsa_public_pem)
        (tmp / "ec.pub").write_bytes(self.ec_public_pem)

    def token(self, alg: str = "RS256", key: Any = None, **claims: Any) -> str:
        now = int(time.time())
        body: dict[str, Any] = {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": now + 300, "iat": now}
        body.update(claims)
        for name, value in list(body.items()):
            if value is None:
                del body[name]
        if key is None:
            key = {"RS256": self.rsa, "ES256": self.ec}.get(alg, HS_SECRET)
        return jwt.encode(body, key, algorithm=alg)


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return Keys(tmp_path_factory.mktemp("keys"))


ROUTES = """
[[routes]]
method = "GET"
path = "/api/orders/{order_id}"
call = "orders.get"
scopes = ["orders:read"]

[[routes]]
method = "GET"
path = "/api/orders"
call = "orders.search"
scopes = ["orders:read"]

[[routes]]
method = "POST"
path = "/api/orders"
call = "orders.place"
status = 201
scopes = ["orders:write"]

[[routes]]
method = "GET"
path = "/api/whoami"
call = "orders.whoami"

[[routes]]
method = "POST"
path = "/api/fail/{code}"
call = "orders.fail"
public = true

[[routes]]
method = "GET"
path = "/public/orders/{order_id}"
call = "orders.get"
public = true
"""


def config_text(address: str, keys_dir: Path, extra: str = "", jwt_section: str | None = None) -> str:
    jwt_part = (
        jwt_section
        if jwt_section is not None
        else f"""
[auth.jwt]
algorithms = ["RS256"]
public_key_file = "{keys_dir / "rsa.pub"}"
issuer = "{ISSUER}"
audience = "{AUDIENCE}"
"""
    )
    return f"""
[gateway]
port = 0
services = ["tests.gateway.services:Orders"]
forward_headers = ["x-tenant"]

[targets]
orders = "{address}"

[auth]
api_keys = [{{ name = "ci", key = "{API_KEY}", scopes = ["orders:read"] }}]
{jwt_part}
{extra}
{ROUTES}
"""


Factory = Callable[..., Any]


@pytest.fixture
def gateway(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Factory:
    keys_dir = next(iter(tmp_path_factory.getbasetemp().glob("keys*")))

    @asynccontextmanager
    async def start(
        extra: str = "", jwt_section: str | None = None, **app_kwargs: Any
    ) -> AsyncIterator[httpx.AsyncClient]:
        async with Server([Orders()]) as backend:
            config = parse(config_text(backend.address, keys_dir, extra, jwt_section))
            async with GatewayServer(GatewayApp(config, **app_kwargs)) as gw:
                async with httpx.AsyncClient(base_url=f"http://{gw.address}") as http:
                    http.gateway = gw  # type: ignore[attr-defined]
                    yield http

    return start


@asynccontextmanager
async def gateway_with_keys(keys_dir: Path, jwt_section: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """This file's gateway (its routes, API key and RS256 JWTs) in front of an Orders backend, with
    the keys in ``keys_dir`` (a Keys of the caller's own: the session ``keys`` fixture is per
    module); yields an HTTP client for it, the server as its ``gateway`` attribute."""
    async with Server([Orders()]) as backend:
        config = parse(config_text(backend.address, keys_dir, jwt_section=jwt_section))
        async with GatewayServer(GatewayApp(config)) as gw, httpx.AsyncClient(base_url=f"http://{gw.address}") as http:
            http.gateway = gw  # type: ignore[attr-defined]
            yield http
