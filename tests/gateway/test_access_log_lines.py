"""One request is one access-log line: a path with percent-encoded CR/LF cannot add (forged) lines
to the access log, and such a path is refused with a 400.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tests.gateway.conftest import Keys
from tests.gateway.conftest import gateway_with_keys as _gateway

FORGED = "GET /api/orders/1 -> 200 in 0.100 ms route=GET /api/orders/{order_id} peer=10.0.0.1 request_id=x"


async def _get(address: str, target: str) -> bytes:
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    async with asyncio.timeout(10):
        data = await reader.read()
    writer.close()
    return data


async def test_a_request_path_cannot_add_lines_to_the_access_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    Keys(tmp_path)  # the public key the config names
    target = "/public/orders/1%0d%0a" + FORGED.replace(" ", "%20").replace(">", "%3E").replace("{", "%7B").replace(
        "}", "%7D"
    )
    caplog.set_level(logging.INFO, logger="meshkit.gateway.access")
    async with _gateway(tmp_path) as http:
        answer = await _get(http.gateway.address, target)  # type: ignore[attr-defined]
    assert answer.startswith(b"HTTP/1.1 400")  # refused, as it should be
    lines = [r.getMessage() for r in caplog.records if r.name == "meshkit.gateway.access"]
    assert lines, "no access-log line"
    assert not any("\n" in line or "\r" in line for line in lines), lines
