"""The suspect-peer probe (transport/pool.py), after a connection went silent:

- every freeze starts the reconnect backoff schedule from the beginning: once a probed connection
  is adopted and has talked, the failed probes of an earlier freeze no longer count, so a server
  that is back after a short freeze is reachable again at once;
- Peer.close() while a new connection is being probed closes that connection too."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from meshkit import Server
from meshkit.protocol.keepalive import KeepaliveConfig
from meshkit.testing import FaultProxy
from meshkit.transport.backoff import Backoff, BackoffPolicy
from meshkit.transport.client import ClientConnection, connect
from meshkit.transport.pool import Peer
from tests.rpc.services import Greeter


async def _eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.005)  # polling a condition, not timing an outcome


def _connector(port: int):  # type: ignore[no-untyped-def]
    config = KeepaliveConfig(interval=0.1, timeout=0.1)

    async def open_connection(on_state_change):  # type: ignore[no-untyped-def]
        return await connect("127.0.0.1", port, keepalive=config, on_state_change=on_state_change, timeout=1.0)

    return open_connection


async def _talk(peer: Peer) -> None:
    conn = peer.pick()
    assert conn is not None
    _sid, fut = conn.request(b"", b"", 0, None)  # the server answers (UNIMPLEMENTED): it talks
    await asyncio.gather(fut, return_exceptions=True)
    assert conn.heard_any


async def test_a_second_freeze_starts_the_backoff_schedule_from_the_beginning() -> None:
    # 10 ms, then x30: two failed probes in the first freeze leave the schedule at 9 s.
    policy = BackoffPolicy(initial=0.01, multiplier=30.0, jitter=0.0, maximum=100.0)
    backoff = Backoff(policy)
    async with Server([Greeter()], middleware=[]) as srv, FaultProxy(srv.address) as proxy:
        peer = Peer(proxy.address, _connector(proxy.port), backoff=backoff)
        try:
            # Freeze 1: two probes go unanswered, then the server is back.
            conn = await peer.acquire()
            await _talk(peer)
            proxy.blackhole()
            await conn.closed
            assert conn.went_silent
            await _eventually(lambda: backoff.failures >= 2)  # (no failure before this freeze)
            proxy.heal()
            await _eventually(lambda: peer.available and peer.pick() is not None)
            await _talk(peer)  # a connection that talked, and may live for hours

            # Freeze 2, much later: one probe goes unanswered, then the server is back at once.
            conn = peer.pick()
            assert conn is not None
            assert peer._last_error is None  # cleared when the probed connection was adopted
            proxy.blackhole()
            await conn.closed
            assert conn.went_silent
            await _eventually(lambda: peer._last_error is not None)  # the first probe failed
            proxy.heal()
            # As after freeze 1's first failed probe (10 ms), not 9 s inherited from freeze 1.
            await _eventually(lambda: peer.available and peer.pick() is not None, timeout=3.0)
        finally:
            await peer.close()


class _FrozenServer:
    """Accepts TCP connections and reads them, never writes a byte (a SIGSTOPped process, as the
    kernel sees it). Records when each connection is closed by the client (EOF or reset)."""

    def __init__(self) -> None:
        self.accepted = 0
        self.ended = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.writers.append(writer)
        try:
            while await reader.read(65536):
                pass
        except (ConnectionError, OSError):
            pass
        finally:
            self.ended += 1
            writer.close()


async def test_peer_close_during_a_probe_closes_the_probing_connection() -> None:
    frozen = _FrozenServer()
    server = await asyncio.start_server(frozen.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    made: list[ClientConnection] = []

    async def open_connection(on_state_change):  # type: ignore[no-untyped-def]
        # The first connection gives up on the silent server fast (so the peer becomes suspect);
        # the next ones have a long keepalive, so the probe (keepalive timeout) takes 30 s and
        # keepalive itself would not close the connection during the test.
        fast = not made
        config = KeepaliveConfig(interval=0.05, timeout=0.05) if fast else KeepaliveConfig(interval=30, timeout=30)
        conn = await connect("127.0.0.1", port, keepalive=config, on_state_change=on_state_change, timeout=1.0)
        made.append(conn)
        return conn

    policy = BackoffPolicy(initial=0.05, multiplier=1.0, jitter=0.0, maximum=0.05)
    peer = Peer(f"127.0.0.1:{port}", open_connection, backoff=Backoff(policy))
    try:
        first = await peer.acquire()
        await first.closed  # keepalive found the frozen server silent
        assert first.went_silent
        # The replacement is connected and being probed (no PONG will come).
        await _eventually(lambda: len(made) >= 2 and peer._connecting is not None and frozen.accepted >= 2)
        probing = made[1]
        assert probing not in peer.connections and not probing.is_closing
        await peer.close()
        # Whatever close() left to finish in the background, the probing connection must go.
        await _eventually(lambda: probing.is_closing, timeout=2.0)
        await _eventually(lambda: frozen.ended >= 2, timeout=2.0)  # the server saw it closed
    finally:
        for conn in made:
            conn.abort()
        for writer in frozen.writers:
            writer.close()
        loop = asyncio.get_running_loop()
        end = loop.time() + 2.0
        while frozen.ended < frozen.accepted and loop.time() < end:  # let the handlers finish
            await asyncio.sleep(0.01)
        server.close()
        await server.wait_closed()
