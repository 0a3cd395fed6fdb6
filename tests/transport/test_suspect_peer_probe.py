"""Review of the suspect-peer probe (transport/pool.py): the reconnect backoff after a connection
went silent. ``_state_changed`` takes the ``went_silent`` branch *before* the one that resets the
backoff for a connection that talked, and a probed connection being adopted does not reset it
either. So failed probes of one freeze are still counted at the next freeze, hours later: every
episode starts further up the schedule (x1.6 per failed probe, up to 120 s by default), and a
server that is back after a short freeze stays unavailable for the inherited delay."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from meshkit import Server
from meshkit.protocol.keepalive import KeepaliveConfig
from meshkit.testing import FaultProxy
from meshkit.transport.backoff import Backoff, BackoffPolicy
from meshkit.transport.client import connect
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
