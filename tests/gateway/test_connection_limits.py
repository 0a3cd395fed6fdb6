"""What a client connection can hold or make the gateway buffer:

- a body that is announced and never sent (``Content-Length: 100``, one byte) does not hold the
  connection and its request for ever: the connection is cut off;
- a request head of a megabyte (one huge header, or twenty thousand small ones) is refused (431,
  400 or a closed connection), not buffered and answered.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.gateway.helpers import closed_by_peer, serving

TIMEOUTS = "header_timeout = 0.3\nidle_timeout = 0.3\nbody_timeout = 0.3"
PLACE = '[[routes]]\nmethod = "POST"\npath = "/orders"\ncall = "orders.place"\npublic = true\n'


async def test_a_body_that_never_arrives_is_cut_off() -> None:
    async with serving(gateway=TIMEOUTS, extra=PLACE) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
        writer.write(
            b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        await writer.drain()  # and the other 99 bytes never come
        closed = await closed_by_peer(reader, within=8)  # 25 times the header and idle timeouts
        writer.close()
    assert closed


async def _status(port: int, request: bytes) -> int:
    """The status the gateway answers ``request`` with; 0 when it closes the connection instead."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(20):
            data = await reader.read()
    except ConnectionError:
        return 0
    finally:
        writer.close()
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0


@pytest.mark.parametrize(
    "head",
    [
        b"X-Big: " + b"a" * (1 << 20) + b"\r\n",
        b"".join(b"X-H%d: v\r\n" % i for i in range(20_000)),
    ],
    ids=["one 1 MiB header", "20000 headers"],
)
async def test_a_request_head_of_a_megabyte_is_refused(head: bytes) -> None:
    async with serving(gateway=TIMEOUTS, extra=PLACE) as gw:
        status = await _status(gw.port, b"GET /orders/1 HTTP/1.1\r\nHost: x\r\n" + head + b"Connection: close\r\n\r\n")
    assert status == 0 or 400 <= status < 500, status  # 431, 400 or a closed connection
