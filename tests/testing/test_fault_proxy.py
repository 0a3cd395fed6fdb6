"""The fault proxy: each fault does what it says to real meshkit calls, and heals."""

from __future__ import annotations

import asyncio
import random

import pytest

from meshkit import Client, RpcError, Server, StatusCode
from meshkit.protocol.keepalive import KeepaliveConfig
from meshkit.testing import FaultProxy
from tests.rpc.services import Greeter


async def test_a_clean_proxy_passes_calls_and_counts_bytes() -> None:
    async with Server([Greeter()], middleware=[]) as srv, FaultProxy(srv.address) as proxy:
        async with Client(target=proxy.address, middleware=[]) as client:
            assert await client.proxy(Greeter).hello("ann") == "hello ann"
    assert proxy.stats.accepted == 1 and proxy.stats.bytes_up > 0 and proxy.stats.bytes_down > 0


async def test_latency_delays_each_way_and_keeps_order() -> None:
    async with Server([Greeter()], middleware=[]) as srv, FaultProxy(srv.address, rng=random.Random(1)) as proxy:
        async with Client(target=proxy.address, middleware=[]) as client:
            greeter = client.proxy(Greeter)
            await greeter.hello("warm")
            proxy.latency(0.05, jitter=0.02)
            loop = asyncio.get_running_loop()
            start = loop.time()
            answers = await asyncio.gather(*(greeter.hello(str(i)) for i in range(20)))
            elapsed = loop.time() - start
    assert answers == [f"hello {i}" for i in range(20)]
    assert elapsed >= 2 * 0.03  # at least the minimum delay, once each way


async def test_a_blackhole_answers_nothing_and_the_server_sees_nothing() -> None:
    greeter_service = Greeter()
    async with Server([greeter_service], middleware=[]) as srv, FaultProxy(srv.address) as proxy:
        proxy.blackhole()
        async with Client(target=proxy.address, middleware=[], timeout=0.3) as client:
            with pytest.raises(RpcError) as info:
                await client.proxy(Greeter).hello("into the void")
    assert info.value.code in (StatusCode.DEADLINE_EXCEEDED, StatusCode.UNAVAILABLE)
    assert proxy.stats.discarded > 0 and proxy.stats.bytes_up == 0
    assert srv.connections == 0  # nothing reached the server


async def test_keepalive_finds_a_connection_blackholed_midway() -> None:
    keepalive = KeepaliveConfig(interval=0.2, timeout=0.2)
    async with Server([Greeter()], middleware=[]) as srv, FaultProxy(srv.address) as proxy:
        async with Client(target=proxy.address, middleware=[], keepalive=keepalive, timeout=30) as client:
            greeter = client.proxy(Greeter)
            assert await greeter.hello("before") == "hello before"
            proxy.blackhole()
            with pytest.raises(RpcError) as info:
                await asyncio.wait_for(greeter.sleep(0.01), timeout=10)
    assert info.value.code is StatusCode.UNAVAILABLE  # declared dead by keepalive, not by the 30 s timeout


@pytest.mark.parametrize("fault", ["drop", "reset"])
async def test_dropped_and_reset_connections_fail_fast_as_unavailable(fault: str) -> None:
    async with Server([Greeter()], middleware=[]) as srv, FaultProxy(srv.address) as proxy:
        getattr(proxy, fault)(1.0)
        async with Client(target=proxy.address, middleware=[], timeout=5, connect_timeout=1) as client:
            with pytest.raises(RpcError) as info:
                await client.proxy(Greeter).hello("x")
    assert info.value.code is StatusCode.UNAVAILABLE
    assert (proxy.stats.dropped if fault == "drop" else proxy.stats.reset) >= 1


async def test_reset_all_breaks_open_connections_and_the_client_reconnects() -> None:
    async with Server([Greeter()], middleware=[]) as srv, FaultProxy(srv.address) as proxy:
        async with Client(target=proxy.address, middleware=[]) as client:
            greeter = client.proxy(Greeter)
            assert await greeter.hello("one") == "hello one"
            proxy.reset_all()
            answers = []
            for _ in range(20):  # the broken connection is noticed, a new one made
                try:
                    answers.append(await greeter.hello("two"))
                    break
                except RpcError as exc:
                    assert exc.code is StatusCode.UNAVAILABLE
    assert answers == ["hello two"]
    assert proxy.stats.accepted >= 2


async def test_a_partition_holds_bytes_until_it_heals() -> None:
    async with Server([Greeter()], middleware=[]) as srv, FaultProxy(srv.address) as proxy:
        async with Client(target=proxy.address, middleware=[], timeout=30) as client:
            greeter = client.proxy(Greeter)
            assert await greeter.hello("before") == "hello before"
            proxy.partition()
            pending = asyncio.create_task(greeter.hello("during"))
            done, _ = await asyncio.wait({pending}, timeout=0.3)
            assert not done  # held, not failed
            proxy.heal()
            assert await pending == "hello during"


def test_bad_fault_settings_are_refused() -> None:
    proxy = FaultProxy("127.0.0.1:1")
    with pytest.raises(ValueError):
        proxy.latency(0.01, jitter=0.02)
    with pytest.raises(ValueError):
        proxy.drop(1.5)
