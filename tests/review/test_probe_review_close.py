"""Review of the suspect-peer probe (transport/pool.py): Peer.close() while a new connection is
being probed must close that connection. close() cancels the connect task, the CancelledError
leaves ``_connect_once`` from inside ``conn.probe()``, and nothing closes ``conn``: it is not in
``peer.connections`` (so close() does not see it) and its ``_state_changed`` is ignored."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from meshkit.protocol.keepalive import KeepaliveConfig
from meshkit.transport.backoff import Backoff, BackoffPolicy
from meshkit.transport.client import ClientConnection, connect
from meshkit.transport.pool import Peer


async def _eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.01)  # polling a condition, not timing an outcome


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
