"""A request body the gateway cannot decode is the client's fault: a JSON body nested deeper than
the decoder goes (``[[[[...`` a thousand deep, 2 KB) is a 400, never a 500.
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
    assert r.status_code == 400, r.text
