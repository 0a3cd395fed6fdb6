"""connect_in_memory: a client's calls reach a server through the whole protocol stack without a
socket — unary calls, errors, deadlines, server streams and cancellation behave as over TCP."""

from __future__ import annotations

import asyncio

import pytest

from meshkit import Client, RpcError, Server, StatusCode
from meshkit.testing import connect_in_memory
from meshkit.testing.memory import MemoryTransport
from tests.rpc.services import Greeter, Probe


async def test_unary_calls_errors_and_streams_go_through_memory() -> None:
    async with Server([Greeter()], middleware=[]) as server:
        async with Client(target=server.address, middleware=[], connector=connect_in_memory(server)) as client:
            greeter = client.proxy(Greeter)
            assert await greeter.hello("ann") == "hello ann"
            with pytest.raises(RpcError) as info:
                await greeter.fail(int(StatusCode.NOT_FOUND), "no such thing")
            assert info.value.code is StatusCode.NOT_FOUND and info.value.message == "no such thing"
            assert [n async for n in greeter.count(5)] == [0, 1, 2, 3, 4]
            conn = client._first_peer().connections[0]
            assert isinstance(conn._transport, MemoryTransport)
            assert conn.peer.startswith("memory-server:")


async def test_a_deadline_and_a_cancel_reach_the_handler_in_memory() -> None:
    probe = Probe()
    async with Server([Greeter(probe)], middleware=[]) as server:
        async with Client(target=server.address, middleware=[], connector=connect_in_memory(server)) as client:
            greeter = client.proxy(Greeter)
            with pytest.raises(RpcError) as info:
                await greeter.with_options(timeout=0.05).wait()
            assert info.value.code is StatusCode.DEADLINE_EXCEEDED
            call = asyncio.ensure_future(greeter.wait())
            await asyncio.wait_for(probe.started.wait(), timeout=5)
            probe.cancelled.clear()
            call.cancel()
            await asyncio.wait_for(probe.cancelled.wait(), timeout=5)


async def test_stopping_the_server_fails_calls_in_flight_and_refuses_new_connections() -> None:
    probe = Probe()
    server = Server([Greeter(probe)], middleware=[])
    await server.start()
    async with Client(target=server.address, middleware=[], connector=connect_in_memory(server)) as client:
        greeter = client.proxy(Greeter)
        pending = asyncio.ensure_future(greeter.wait())
        await asyncio.wait_for(probe.started.wait(), timeout=5)
        await server.stop(grace=0.05)
        with pytest.raises(RpcError) as info:
            await asyncio.wait_for(pending, timeout=5)
        assert info.value.code is StatusCode.UNAVAILABLE and "stopped" in info.value.message
        with pytest.raises(RpcError) as info:
            await greeter.hello("late")
        assert info.value.code is StatusCode.UNAVAILABLE
