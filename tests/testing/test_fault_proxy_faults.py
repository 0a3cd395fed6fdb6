"""Review of meshkit.testing.FaultProxy: bugs pinned as strict xfails (raw TCP, 127.0.0.1 only)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Callable

import pytest

from meshkit.testing import FaultProxy
from tests.helpers import LoopLag


class _Upstream:
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
async def _upstream() -> AsyncIterator[_Upstream]:
    up = _Upstream()
    up.server = await asyncio.start_server(up._on, "127.0.0.1", 0)
    try:
        yield up
    finally:
        up.server.close()
        while not up.conns.empty():
            up.conns.get_nowait()[1].transport.abort()


def _rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _closed(reader: asyncio.StreamReader, timeout: float) -> bool:
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


async def test_a_client_reset_reaches_the_server() -> None:
    async with _upstream() as up, FaultProxy(up.address) as proxy:
        _, client = await asyncio.open_connection("127.0.0.1", proxy.port)
        server_reader, _ = await asyncio.wait_for(up.conns.get(), 5)
        _rst(client)
        assert await _closed(server_reader, 3.0), "the server never learned the client reset its connection"


async def test_heal_ends_the_blackhole_of_connections_accepted_during_it() -> None:
    """heal() resets connections accepted while blackholed (they have no server behind them), so
    clients notice and reconnect; a new connection then reaches the server."""
    async with _upstream() as up, FaultProxy(up.address) as proxy:
        proxy.blackhole()
        reader, client = await asyncio.open_connection("127.0.0.1", proxy.port)
        client.write(b"lost")
        await client.drain()
        await _until(lambda: proxy.stats.discarded == 4)
        proxy.heal()
        try:
            assert await asyncio.wait_for(reader.read(), 3) == b""  # reset or closed: not left hanging
        except ConnectionError:
            pass
        client.close()
        _, again = await asyncio.open_connection("127.0.0.1", proxy.port)
        again.write(b"after heal")
        await again.drain()
        server_reader, _ = await asyncio.wait_for(up.conns.get(), 3)
        assert await asyncio.wait_for(server_reader.readexactly(10), 3) == b"after heal"
        again.close()


async def test_latency_does_not_compound_for_back_to_back_chunks() -> None:
    delay = 0.4
    loop = asyncio.get_running_loop()
    async with _upstream() as up, FaultProxy(up.address) as proxy:
        proxy.latency(delay)
        _, client = await asyncio.open_connection("127.0.0.1", proxy.port)
        server_reader, _ = await asyncio.wait_for(up.conns.get(), 5)
        client.write(b"a")
        await client.drain()
        # Wait until the up pump holds the first chunk (sleeping out its delay), then send the second.
        await _until(lambda: _pump_sleeping(proxy))
        with LoopLag() as lag:  # the proxy's delay timer is as late as the loop
            sent_b = loop.time()
            client.write(b"b")
            await client.drain()
            assert await asyncio.wait_for(server_reader.readexactly(1), 5) == b"a"
            assert await asyncio.wait_for(server_reader.readexactly(1), 5) == b"b"
            late = loop.time() - sent_b
    assert late - lag.worst < delay * 1.5, (
        f"the second chunk arrived {late:.2f} s after it was sent (loop lag {lag.worst:.2f} s), latency is {delay} s"
    )


async def test_a_partition_hides_new_connections_from_the_server() -> None:
    async with _upstream() as up, FaultProxy(up.address) as proxy:
        proxy.partition()
        _, client = await asyncio.open_connection("127.0.0.1", proxy.port)
        await _until(lambda: proxy.stats.accepted == 1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(up.conns.get(), 1.0)
        client.close()


def _pump_sleeping(proxy: FaultProxy) -> bool:
    for link in proxy._links:
        for task in link.tasks:
            coro = task.get_coro()
            frame = getattr(coro, "cr_frame", None)
            if frame is not None and frame.f_locals.get("direction") == "up" and frame.f_locals.get("data"):
                return True
    return False


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def test_stop_ends_connections_still_waiting_for_a_partition_to_heal() -> None:
    async with _upstream() as up:
        proxy = FaultProxy(up.address)
        await proxy.start()
        proxy.partition()
        reader, client = await asyncio.open_connection("127.0.0.1", proxy.port)
        await _until(lambda: proxy.stats.accepted == 1)
        await proxy.stop()
        assert not proxy._handlers, "stop() returned while a connection's handling was still running"
        assert proxy.stats.open == 0
        assert await _closed(reader, 2.0), "the client's connection outlived the proxy"
        client.close()


async def test_stop_ends_forwarding_connections_and_their_pumps() -> None:
    async with _upstream() as up:
        proxy = FaultProxy(up.address)
        await proxy.start()
        reader, client = await asyncio.open_connection("127.0.0.1", proxy.port)
        await up.conns.get()
        await _until(lambda: any(link.tasks for link in proxy._links))
        pumps = [task for link in proxy._links for task in link.tasks]
        await proxy.stop()
        assert all(task.done() for task in pumps)
        assert not proxy._handlers and proxy.stats.open == 0
        assert await _closed(reader, 2.0)
        client.close()
