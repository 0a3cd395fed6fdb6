"""A gateway config that loads serves requests: values that would make every request fail
(``limits.max_tracked = 0``; ``auth.api_key_header = "authorization"``, which would read the one
Authorization header as two credentials) are either refused at load or work.
"""

from __future__ import annotations

from meshkit.gateway import GatewayConfigError, parse
from tests.gateway.helpers import http_client, orders_config, serving

KEY = "a-key-long-enough-0123456789"


async def _status(extra: str, access: str, headers: dict[str, str] | None = None) -> int | None:
    """The status of GET /orders/1 under a config with ``extra``; None when the config is refused."""
    try:
        parse(orders_config("127.0.0.1:1", route=access, extra=extra))
    except GatewayConfigError:
        return None
    async with serving(route=access, extra=extra) as gw, http_client(gw) as http:
        return (await http.get("/orders/1", headers=headers or {})).status_code


async def test_max_tracked_zero_is_refused_at_load_or_works() -> None:
    status = await _status("[limits]\nmax_tracked = 0\nper_ip = { rate = 10 }\n", "public = true")
    assert status in (None, 200), status


async def test_an_api_key_header_named_authorization_is_refused_at_load_or_works() -> None:
    extra = f'[auth]\napi_key_header = "authorization"\napi_keys = [{{ name = "ci", key = "{KEY}" }}]\n'
    status = await _status(extra, "", {"authorization": f"ApiKey {KEY}"})
    assert status in (None, 200), status
