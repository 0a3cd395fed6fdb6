"""A token whose header names an allowed algorithm that the configured key cannot verify (an ES256 or
EdDSA token against an RSA key) is a 401, never a 500; or the config that allows such algorithms
is refused at load, saying the key cannot verify them.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from meshkit.gateway.config import GatewayConfigError
from tests.gateway.conftest import AUDIENCE, ISSUER, Keys
from tests.gateway.conftest import gateway_with_keys as _gateway


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(alg: str) -> str:
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = _b64(json.dumps({"sub": "mallory", "exp": 4_000_000_000}).encode())
    return f"{header}.{payload}.{_b64(b'not a signature')}"


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
async def test_a_token_in_an_allowed_algorithm_the_key_cannot_verify_is_401(tmp_path: Path, alg: str) -> None:
    keys = Keys(tmp_path)
    keys_dir = tmp_path
    section = (
        f'[auth.jwt]\nalgorithms = ["RS256", "ES256", "EdDSA"]\npublic_key_file = "{keys_dir / "rsa.pub"}"\n'
        f'issuer = "{ISSUER}"\naudience = "{AUDIENCE}"\n'
    )
    try:
        async with _gateway(keys_dir, jwt_section=section) as http:
            auth = {"authorization": f"Bearer {keys.token(scope='orders:read')}"}
            good = await http.get("/api/orders/1", headers=auth)
            forged = await http.get("/api/orders/1", headers={"authorization": f"Bearer {_unsigned(alg)}"})
    except GatewayConfigError as exc:
        assert "cannot verify" in str(exc)  # refused at load: the key cannot do every allowed algorithm
        return
    assert good.status_code == 200  # the config works for the tokens it is meant for
    assert forged.status_code == 401, forged.text
