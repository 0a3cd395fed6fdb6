"""Rate limits (429 + Retry-After, per address before credentials, per caller after) and the
JWT algorithm families, through real HTTP; time is a FakeClock."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshkit.testing import FakeClock
from tests.gateway.conftest import API_KEY, AUDIENCE, HS_SECRET, ISSUER, Factory, Keys

READ = {"x-api-key": API_KEY}


async def test_per_address_limit_answers_429_with_retry_after_before_credentials(gateway: Factory) -> None:
    clock = FakeClock()
    extra = "[limits]\nper_ip = { rate = 0.5, burst = 2 }\n"
    async with gateway(extra=extra, clock=clock) as http:
        first = [(await http.get("/api/orders/1")).status_code for _ in range(2)]  # no credentials: 401s
        limited = await http.get("/api/orders/1", headers=READ)
        clock.advance(2.0)  # one token back at 0.5/s
        again = await http.get("/api/orders/1", headers=READ)
    assert first == [401, 401]  # the bucket is taken before credentials are looked at
    assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
    assert limited.json()["code"] == "RESOURCE_EXHAUSTED"
    assert again.status_code == 200


async def test_per_caller_limit_counts_the_proven_identity(gateway: Factory, keys: Keys) -> None:
    clock = FakeClock()
    extra = "[limits]\nper_key = { rate = 1, burst = 1 }\n"
    async with gateway(extra=extra, clock=clock) as http:
        ci = [(await http.get("/api/orders/1", headers=READ)).status_code for _ in range(2)]
        alice = (await http.get("/api/orders/1", headers={"authorization": f"Bearer {keys.token()}"})).status_code
        bad = (await http.get("/api/orders/1", headers={"x-api-key": "x" * 20})).status_code
    assert ci == [200, 429]  # the key "ci" has used its one token
    assert alice == 403  # another caller has its own bucket (then lacks the scope: no orders:read)
    assert bad == 401  # refused credentials never reach a bucket


@pytest.mark.parametrize("family", ["HS256", "ES256"])
async def test_each_algorithm_family_verifies_its_own_tokens(gateway: Factory, keys: Keys, family: str) -> None:
    keys_dir = next(iter(Path(keys_path()).glob("keys*")))
    pub = keys_dir / "ec.pub"
    key = f'secret = "{HS_SECRET}"' if family == "HS256" else f'public_key_file = "{pub}"'
    section = f'[auth.jwt]\nalgorithms = ["{family}"]\n{key}\nissuer = "{ISSUER}"\naudience = "{AUDIENCE}"\n'
    async with gateway(jwt_section=section) as http:
        own = await http.get(
            "/api/orders/1", headers={"authorization": f"Bearer {keys.token(alg=family, scope='orders:read')}"}
        )
        rs = await http.get(
            "/api/orders/1", headers={"authorization": f"Bearer {keys.token(alg='RS256', scope='orders:read')}"}
        )
    assert own.status_code == 200
    assert rs.status_code == 401 and "algorithm" in rs.json()["message"]


_base: list[str] = []


@pytest.fixture(autouse=True)
def _remember_base(tmp_path_factory: pytest.TempPathFactory) -> None:
    _base[:] = [str(tmp_path_factory.getbasetemp())]


def keys_path() -> str:
    return _base[0]
