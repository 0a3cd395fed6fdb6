"""Review of FaultProxy.stop (testing/proxy.py, commit 24b5141: "FaultProxy.stop waits for every
connection's handling"). stop() only knows the handler tasks that have already *started*
(``_accept`` adds itself to ``_handlers`` on its first step). A connection the event loop has
accepted but whose handler task has not run yet (asyncio takes a few loop iterations from
``sock.accept()`` to the ``client_connected_cb`` task's first step) is missed: stop() returns,
then the handler runs, opens a connection to the upstream server and proxies it, with nobody left
to close it (Server.close() in 3.11 does not close accepted transports, and wait_closed() returns
at once after close())."""

from __future__ import annotations

import asyncio
import socket

from meshkit.testing import FaultProxy


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
