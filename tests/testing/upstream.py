"""A raw TCP upstream for the fault-proxy tests (127.0.0.1 only): it records each connection it
accepts, so a test can see what reaches the server behind the proxy."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable


class Upstream:
    """A raw TCP server that records each accepted connection's (reader, writer)."""

    def __init__(self) -> None:
        self.conns: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
        self.server: asyncio.Server | None = None

    async def _on(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.conns.put((reader, writer))

    @property
    def address(self) -> str:
        assert self.server is not None
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"


@contextlib.asynccontextmanager
async def recording_upstream() -> AsyncIterator[Upstream]:
    up = Upstream()
    up.server = await asyncio.start_server(up._on, "127.0.0.1", 0)
    try:
        yield up
    finally:
        up.server.close()
        while not up.conns.empty():
            up.conns.get_nowait()[1].transport.abort()


async def closed(reader: asyncio.StreamReader, timeout: float) -> bool:
    """Does the peer's close (FIN or RST) reach this reader within ``timeout``?"""
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds (a condition, not a sleep); fail after ``timeout``."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)
