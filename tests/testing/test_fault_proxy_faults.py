"""What each FaultProxy fault does to raw TCP connections (127.0.0.1 only): a client's reset
reaches the server; heal() ends the blackhole of connections accepted during it (they are reset,
so their clients reconnect); latency delays each chunk by its own delay, never compounding for
chunks sent back to back; a partition hides new connections from the server."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from meshkit.testing import FaultProxy
from tests.helpers import LoopLag
from tests.testing.upstream import closed, recording_upstream, until


def _rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def test_a_client_reset_reaches_the_server() -> None:
    async with recording_upstream() as up, FaultProxy(up.address) as proxy:
        _, client = await asyncio.open_connection("127.0.0.1", proxy.port)
        server_reader, _ = await asyncio.wait_for(up.conns.get(), 5)
        _rst(client)
        assert await closed(server_reader, 3.0), "the server never learned the client reset its connection"


async def test_heal_ends_the_blackhole_of_connections_accepted_during_it() -> None:
    """heal() resets connections accepted while blackholed (they have no server behind them), so
    clients notice and reconnect; a new connection then reaches the server."""
    async with recording_upstream() as up, FaultProxy(up.address) as proxy:
        proxy.blackhole()
        reader, client = await asyncio.open_connection("127.0.0.1", proxy.port)
        client.write(b"lost")
        await client.drain()
        await until(lambda: proxy.stats.discarded == 4)
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
    async with recording_upstream() as up, FaultProxy(up.address) as proxy:
        proxy.latency(delay)
        _, client = await asyncio.open_connection("127.0.0.1", proxy.port)
        server_reader, _ = await asyncio.wait_for(up.conns.get(), 5)
        client.write(b"a")
        await client.drain()
        # Wait until the up pump holds the first chunk (sleeping out its delay), then send the second.
        await until(lambda: _pump_sleeping(proxy))
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
    async with recording_upstream() as up, FaultProxy(up.address) as proxy:
        proxy.partition()
        _, client = await asyncio.open_connection("127.0.0.1", proxy.port)
        await until(lambda: proxy.stats.accepted == 1)
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
