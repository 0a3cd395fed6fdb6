"""A client pointed at a port that does not speak meshkit fails its calls at once, as UNAVAILABLE
and not processed, with what the peer answered, instead of waiting for the deadline."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from meshkit import Client, RpcError, StatusCode


@pytest.fixture
def http_port() -> Iterator[int]:
    """Python's own HTTP server: it reads a request line and answers an error for ours."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


async def _serve(on_connect: bytes | None) -> AsyncIterator[int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if on_connect is not None:
            writer.write(on_connect)
        try:
            await reader.read(1 << 16)
            await reader.read()  # then nothing: wait until the client leaves
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@pytest.fixture
async def banner_port() -> AsyncIterator[int]:
    """A server that greets first (as MySQL, SMTP and SSH do)."""
    async for port in _serve(b"220 mail.example ESMTP ready\r\n"):
        yield port


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    async for port in _serve(None):
        yield port


async def _refusal(port: int, timeout: float = 10.0) -> tuple[RpcError, float]:
    loop = asyncio.get_running_loop()
    async with Client(target=f"127.0.0.1:{port}", timeout=timeout, middleware=[]) as client:
        start = loop.time()
        with pytest.raises(RpcError) as info:
            await client.call("greeter", "hello", {"name": "ann"})
        return info.value, loop.time() - start


async def test_an_http_server_is_named_as_not_meshkit(http_port: int) -> None:
    err, _ = await _refusal(http_port)
    assert err.code is StatusCode.UNAVAILABLE and err.not_processed
    assert "is not a meshkit server" in err.message and "HTML" in err.message


async def test_a_server_that_greets_first_is_named_as_not_meshkit(banner_port: int) -> None:
    err, _ = await _refusal(banner_port)
    assert err.code is StatusCode.UNAVAILABLE and err.not_processed
    assert "is not a meshkit server" in err.message and "ESMTP" in err.message


async def test_a_silent_server_still_costs_the_deadline(silent_port: int) -> None:
    """The limit of the check: a peer that answers nothing cannot be told from a slow one."""
    err, _ = await _refusal(silent_port, timeout=0.2)
    assert err.code is StatusCode.DEADLINE_EXCEEDED
