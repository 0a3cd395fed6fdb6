"""Percent-encoded bytes that are not UTF-8 are refused in the query string as in the path (400):
they never reach the service replaced by U+FFFD.
"""

from __future__ import annotations

from pathlib import Path

from tests.gateway.conftest import API_KEY, Keys
from tests.gateway.conftest import gateway_with_keys as _gateway


async def test_percent_encoded_bytes_that_are_not_utf8_in_the_query_are_refused(tmp_path: Path) -> None:
    Keys(tmp_path)  # the public key the config names
    async with _gateway(tmp_path) as http:
        path = await http.get("/public/orders/%ff")
        query = await http.get("/api/orders?item=%ff", headers={"x-api-key": API_KEY})
    assert path.status_code == 400  # the path refuses them
    assert query.status_code == 400, query.text
