"""Review of the gateway's body handling: a JSON body nested deeper than msgspec decodes.

``GatewayApp._body`` catches ``msgspec.DecodeError`` only, but msgspec reports a body nested past
the interpreter's recursion limit (``[[[[...`` a thousand deep: 2 KB) with ``RecursionError``: the
gateway answers 500 "internal gateway error" and logs a traceback, for any caller of a public
POST route (and any authenticated one elsewhere), as often as it likes.
"""

from __future__ import annotations

from pathlib import Path

from tests.gateway.conftest import Keys
from tests.gateway.conftest import gateway_with_keys as _gateway


async def test_a_deeply_nested_json_body_is_a_400_not_a_500(tmp_path: Path) -> None:
    Keys(tmp_path)  # the public key the config names
    body = b"[" * 1000 + b"]" * 1000
    async with _gateway(tmp_path) as http:
        r = await http.post("/api/fail/5", content=body, headers={"content-type": "application/json"})  # public
    assert r.status_code == 400, r.text  # today: 500
