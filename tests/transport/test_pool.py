"""The per-peer pool: least-loaded pick, fail-fast during backoff, reconnect after it."""

from __future__ import annotations

import asyncio

import pytest

from meshkit import Client, RpcError, Server, StatusCode
from meshkit.transport.backoff import Backoff, BackoffPolicy
from meshkit.transport.client import connect
from meshkit.transport.pool import Peer
from tests.rpc.services import Greeter


def connector(host: str, port: int):  # type: ignore[no-untyped-def]
    async def open_connection(on_state_change):  # type: ignore[no-untyped-def]
        return await connect(host, port, on_state_change=on_state_change, timeout=1.0)

    return open_connection


async def test_pool_opens_up_to_size_connections_under_load() -> None:
    async with Server([Greeter()], middleware=[]) as srv:
        peer = Peer(srv.address, connector("127.0.0.1", srv.port), size=3)
        first = await peer.acquire()
        assert len(peer.connections) == 1
        # While the only connection is busy, picking asks for more, up to the size.
        first.pending[999] = asyncio.get_running_loop().create_future()
        peer.pick()
        for _ in range(100):
            if len(peer.connections) >= 2:
                break
            await asyncio.sleep(0.01)
        assert 2 <= len(peer.connections) <= 3
        assert peer.pick() is not first  # the idle connection is the least loaded
        first.pending.pop(999).cancel()
        await peer.close()


async def test_unreachable_peer_fails_fast_during_backoff() -> None:
    peer = Peer("127.0.0.1:1", connector("127.0.0.1", 1), backoff=Backoff(BackoffPolicy(initial=30.0)))
    with pytest.raises(RpcError) as info:
        await peer.acquire()
    assert info.value.code is StatusCode.UNAVAILABLE and info.value.not_processed
    assert not peer.available
    with pytest.raises(RpcError) as info:
        await peer.acquire()  # no new attempt: we are inside the 30 s backoff
    assert "is unreachable" in info.value.message and "next attempt" not in info.value.message
    assert info.value.details["reason"] == "unreachable" and info.value.details["retry_after"] > 0
    await peer.close()


async def test_lost_connection_is_replaced() -> None:
    async with Server([Greeter()], middleware=[]) as srv:
        peer = Peer(srv.address, connector("127.0.0.1", srv.port))
        conn = await peer.acquire()
        _sid, fut = conn.request(b"", b"", 0, None)  # the server answers (UNIMPLEMENTED): it talks
        await asyncio.gather(fut, return_exceptions=True)
        conn.abort()
        await conn.closed
        assert conn not in peer.connections
        replacement = await peer.acquire()
        assert replacement is not conn and replacement.usable
        await peer.close()


async def test_peer_that_hangs_up_at_once_is_retried_on_backoff() -> None:
    accepted = 0

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    peer = Peer(f"127.0.0.1:{port}", connector("127.0.0.1", port), backoff=Backoff(BackoffPolicy(initial=30.0)))
    try:
        for _ in range(20):
            try:
                conn = await peer.acquire()
                await conn.closed
            except RpcError:
                pass
        # One or two attempts, then the 30 s backoff: not one connection per loop iteration.
        assert accepted <= 2
        assert not peer.available
    finally:
        await peer.close()
        server.close()
        await server.wait_closed()


def _keepalive_connector(host: str, port: int, interval: float, timeout: float):  # type: ignore[no-untyped-def]
    from meshkit.protocol.keepalive import KeepaliveConfig

    config = KeepaliveConfig(interval=interval, timeout=timeout)

    async def open_connection(on_state_change):  # type: ignore[no-untyped-def]
        return await connect(host, port, keepalive=config, on_state_change=on_state_change, timeout=1.0)

    return open_connection


async def _eventually(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.01)  # polling a condition, not timing an outcome


async def test_after_a_connection_went_silent_a_new_one_carries_calls_only_once_it_answers_a_ping() -> None:
    from meshkit.testing import FaultProxy

    async with Server([Greeter()], middleware=[]) as srv, FaultProxy(srv.address) as proxy:
        policy = BackoffPolicy(initial=0.05, multiplier=1.0, jitter=0.0, maximum=0.05)
        peer = Peer(proxy.address, _keepalive_connector("127.0.0.1", proxy.port, 0.1, 0.1), backoff=Backoff(policy))
        conn = await peer.acquire()
        _sid, fut = conn.request(b"", b"", 0, None)
        await asyncio.gather(fut, return_exceptions=True)  # it talked
        proxy.blackhole()
        await conn.closed  # keepalive found it silent
        assert conn.went_silent
        # The blackhole accepts new connections; none of them is trusted: no PONG comes back.
        await _eventually(lambda: proxy.stats.accepted >= 3)
        assert not peer.available and peer.connections == []
        assert peer.pick() is None
        proxy.heal()
        await _eventually(lambda: peer.available and peer.pick() is not None)
        assert not peer._suspect
        await peer.close()


async def test_a_probe_is_answered_by_a_live_server_at_once() -> None:
    async with Server([Greeter()], middleware=[]) as srv:
        conn = await connect("127.0.0.1", srv.port)
        assert await conn.probe(5.0)
        assert conn.heard_any
        conn.close()
        await conn.closed
        assert not await conn.probe(5.0)  # a closed connection answers nothing


async def test_peer_that_accepts_then_closes_is_not_reconnected_in_a_hot_loop() -> None:
    accepts = 0
    storm = asyncio.Event()

    def on_accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepts
        accepts += 1
        if accepts >= 50:
            storm.set()
        writer.close()

    listener = await asyncio.start_server(on_accept, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        async with Client(target=f"127.0.0.1:{port}", middleware=[], timeout=1) as c:
            with pytest.raises(RpcError):
                await c.proxy(Greeter).hello("x")
            # The default policy waits 1 s after a failure: 50 connects within 1 s is a storm.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(storm.wait(), timeout=1.0)
    finally:
        listener.close()


async def test_close_during_connect_fails_waiters_with_rpc_error() -> None:
    started = asyncio.Event()

    async def slow_connect(on_state_change):  # type: ignore[no-untyped-def]
        started.set()
        await asyncio.Event().wait()

    peer = Peer("10.0.0.1:1", slow_connect, backoff=Backoff(BackoffPolicy()))
    waiter = asyncio.create_task(peer.acquire())
    await asyncio.wait_for(started.wait(), timeout=2)
    await peer.close()
    with pytest.raises(RpcError):
        await asyncio.wait_for(waiter, timeout=2)
