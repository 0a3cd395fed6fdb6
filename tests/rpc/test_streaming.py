"""Server streaming with credit-based flow control."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator

import pytest

from meshkit import Client, RpcError, Server, Service, StatusCode, rpc
from tests.rpc.services import Greeter, Probe, Quirks


async def test_stream_delivers_every_item_in_order(client: Client) -> None:
    assert [x async for x in client.proxy(Greeter).count(1000)] == list(range(1000))


async def test_empty_stream(client: Client) -> None:
    assert [x async for x in client.proxy(Greeter).count(0)] == []


async def test_stream_error_after_items(client: Client) -> None:
    got = []
    with pytest.raises(RpcError) as info:
        async for x in client.proxy(Greeter).count_then_fail(3):
            got.append(x)
    assert got == [0, 1, 2]
    assert info.value.code is StatusCode.ABORTED


async def test_slow_consumer_bounds_what_the_server_produces(probe: Probe) -> None:
    window = 8
    async with Server([Greeter(probe)], middleware=[]) as srv:
        async with Client(target=srv.address, stream_window=window) as c:
            stream = c.proxy(Greeter).count(10_000)
            first = await stream.__anext__()
            assert first == 0
            # Let the server run as far ahead as credit allows: it must stop at the window.
            # Round trips on the same connection give the server many loop iterations to run ahead.
            for _ in range(20):
                assert await c.proxy(Greeter).hello("tick") == "hello tick"
            assert probe.produced <= window + 1
            consumed = 1
            async for _ in stream:
                consumed += 1
                if consumed == 100:
                    break
            await stream.aclose()
            assert probe.produced < 100 + window + 2


async def test_breaking_out_of_a_stream_cancels_it(client: Client, probe: Probe) -> None:
    async for x in client.proxy(Greeter).count(1_000_000):
        if x == 10:
            break
    # The server stops the handler: its generator is closed long before the end (without a
    # CANCEL it would sit waiting for credit that never comes, and never be closed).
    await asyncio.wait_for(probe.stream_closed.wait(), timeout=5)
    assert probe.produced < 1_000_000
    # The connection is still fine for other calls.
    assert await client.proxy(Greeter).hello("x") == "hello x"


async def test_unary_call_to_stream_method_is_refused(client: Client) -> None:
    with pytest.raises(RpcError) as info:
        await client.call("greeter", "count", {"n": 3})
    assert info.value.code is StatusCode.FAILED_PRECONDITION


async def test_dynamic_stream(client: Client) -> None:
    assert [x async for x in client.stream("greeter", "count", {"n": 5})] == [0, 1, 2, 3, 4]


async def test_break_out_of_stream_cancels_it_on_the_server() -> None:
    svc = Quirks()
    async with Server([svc], middleware=[]) as srv, Client(target=srv.address, middleware=[]) as c:
        async for _ in c.stream("quirks", "ticks", {"n": 100_000}):
            break
        gc.collect()
        await asyncio.wait_for(svc.stream_closed.wait(), timeout=2)
        assert c._first_peer().connections[0].pending == {}


async def test_dynamic_stream_uses_the_client_default_timeout() -> None:
    async with Server([Quirks()], middleware=[]) as srv:
        async with Client(target=srv.address, middleware=[], timeout=0.2) as c:
            with pytest.raises(RpcError) as info:
                await asyncio.wait_for(c.stream("quirks", "hang").__anext__(), timeout=2)
            assert info.value.code is StatusCode.DEADLINE_EXCEEDED


class Forever(Service, name="forever"):
    @rpc
    async def ticks(self, n: int) -> AsyncIterator[int]:
        yield n
        await asyncio.Event().wait()  # until the server stops


@pytest.mark.parametrize("grace", [0.0, 0.2])
async def test_a_stream_open_when_its_server_stops_ends_with_unavailable(grace: float) -> None:
    """With no grace the GOAWAY and the stream's ERROR come in one read; the ERROR must still
    reach the stream (it used to be dropped with the connection, and the stream waited for ever)."""
    server = Server([Forever()], host="127.0.0.1", port=0, middleware=[])
    await server.start()
    async with Client(target=server.address, middleware=[]) as client:
        stream = client.stream("forever", "ticks", {"n": 1})
        items = aiter(stream)
        assert await anext(items) == 1
        await server.stop(grace=grace)
        with pytest.raises(RpcError) as err:
            async with asyncio.timeout(5):
                await anext(items)
        assert err.value.code is StatusCode.UNAVAILABLE
