"""FaultProxy.stop() ends everything the proxy handles before it returns: a connection accepted but
not handled yet is not proxied afterwards (at whichever step of asyncio's accept path stop()
comes), a connection waiting for a partition to heal is closed, and a forwarding connection is
closed with its pumps."""

from __future__ import annotations

import asyncio
import socket

from meshkit.testing import FaultProxy
from tests.testing.upstream import closed, recording_upstream, until


async def test_no_connection_is_proxied_after_stop_returns() -> None:
    loop = asyncio.get_running_loop()
    late: list[str] = []
    for yields in range(8):  # stop() at each step of asyncio's accept path
        upstream_writers: list[asyncio.StreamWriter] = []

        async def on_upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            upstream_writers.append(writer)  # noqa: B023 - each round its own server and list

        upstream = await asyncio.start_server(on_upstream, "127.0.0.1", 0)
        proxy = FaultProxy(f"127.0.0.1:{upstream.sockets[0].getsockname()[1]}")
        await proxy.start()
        client = socket.create_connection(("127.0.0.1", proxy.port), timeout=1.0)
        try:
            for _ in range(yields):
                await asyncio.sleep(0)
            await proxy.stop()
            upstream_at_stop = len(upstream_writers)
            # Nothing may happen after stop() returned: give the loop a bounded while to show it.
            end = loop.time() + 0.3
            while not proxy._handlers and not proxy.stats.open and loop.time() < end:
                await asyncio.sleep(0.005)
            if proxy._handlers or proxy.stats.open:
                late.append(
                    f"stop after {yields} loop iterations: {len(upstream_writers) - upstream_at_stop} upstream "
                    f"connection(s) opened after stop, {len(proxy._handlers)} handler(s) running, "
                    f"stats.open={proxy.stats.open}"
                )
        finally:
            client.close()
            # Clean up what a late handler left behind (a second stop() sees it now).
            await proxy.stop()
            for writer in upstream_writers:
                writer.close()
            upstream.close()
            await upstream.wait_closed()
    assert not late, "; ".join(late)


async def test_stop_ends_connections_still_waiting_for_a_partition_to_heal() -> None:
    async with recording_upstream() as up:
        proxy = FaultProxy(up.address)
        await proxy.start()
        proxy.partition()
        reader, client = await asyncio.open_connection("127.0.0.1", proxy.port)
        await until(lambda: proxy.stats.accepted == 1)
        await proxy.stop()
        assert not proxy._handlers, "stop() returned while a connection's handling was still running"
        assert proxy.stats.open == 0
        assert await closed(reader, 2.0), "the client's connection outlived the proxy"
        client.close()


async def test_stop_ends_forwarding_connections_and_their_pumps() -> None:
    async with recording_upstream() as up:
        proxy = FaultProxy(up.address)
        await proxy.start()
        reader, client = await asyncio.open_connection("127.0.0.1", proxy.port)
        await up.conns.get()
        await until(lambda: any(link.tasks for link in proxy._links))
        pumps = [task for link in proxy._links for task in link.tasks]
        await proxy.stop()
        assert all(task.done() for task in pumps)
        assert not proxy._handlers and proxy.stats.open == 0
        assert await closed(reader, 2.0)
        client.close()
