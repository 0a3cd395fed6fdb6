"""Clients that find servers by service name through a registry (memory:// here)."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator

import pytest

from meshkit import Client, RpcError, Server, StatusCode, rpc
from meshkit.discovery.memory import reset
from tests.rpc.services import Who


@pytest.fixture
async def servers() -> AsyncIterator[list[Server]]:
    reset()
    started = [Server([Who(label)], middleware=[], registry="memory://d") for label in "ab"]
    for s in started:
        await s.start()
    yield started
    for s in started:
        await s.stop(grace=1)


async def test_calls_spread_over_registered_instances(servers: list[Server]) -> None:
    async with Client(registry="memory://d", balancer="round_robin") as c:
        got = collections.Counter([await c.proxy(Who).am_i() for _ in range(20)])
    assert got == {"a": 10, "b": 10}


@pytest.mark.parametrize("balancer", ["random", "weighted_random", "weighted_round_robin", "p2c"])
async def test_every_balancer_reaches_every_instance(servers: list[Server], balancer: str) -> None:
    async with Client(registry="memory://d", balancer=balancer) as c:
        got = collections.Counter(await asyncio.gather(*(c.proxy(Who).am_i() for _ in range(200))))
    assert set(got) == {"a", "b"}


async def test_hash_key_pins_a_key_to_one_instance(servers: list[Server]) -> None:
    async with Client(registry="memory://d", balancer="consistent_hash") as c:
        for key in ("ann", "bob", "cid", "dan"):
            p = c.proxy(Who).with_options(hash_key=key)
            assert len({await p.am_i() for _ in range(10)}) == 1


async def test_stopped_instance_stops_getting_calls_and_none_fail(servers: list[Server]) -> None:
    async with Client(registry="memory://d", balancer="round_robin") as c:
        who = c.proxy(Who)
        assert {await who.am_i() for _ in range(4)} == {"a", "b"}
        in_flight = [asyncio.create_task(who.slow(0.1)) for _ in range(20)]
        await asyncio.sleep(0)
        await servers[0].stop(grace=5)  # deregisters first, then drains
        during = [asyncio.create_task(who.am_i()) for _ in range(50)]
        results = await asyncio.gather(*in_flight, *during)
        assert all(r in ("a", "b") for r in results)
        assert {await who.am_i() for _ in range(10)} == {"b"}


async def test_new_instance_is_picked_up_by_watch(servers: list[Server]) -> None:
    async with Client(registry="memory://d", balancer="round_robin") as c:
        who = c.proxy(Who)
        assert {await who.am_i() for _ in range(4)} == {"a", "b"}
        late = Server([Who("c")], middleware=[], registry="memory://d")
        await late.start()
        try:
            for _ in range(100):  # the watch delivers on the next loop turns
                await asyncio.sleep(0)
            assert {await who.am_i() for _ in range(9)} == {"a", "b", "c"}
        finally:
            await late.stop(grace=1)


async def test_no_instances_is_unavailable() -> None:
    reset()
    async with Client(registry="memory://empty") as c:
        with pytest.raises(RpcError) as info:
            await c.proxy(Who).am_i()
    assert info.value.code is StatusCode.UNAVAILABLE and "who" in info.value.message


def test_client_options_are_checked() -> None:
    with pytest.raises(ValueError, match="p2c"):
        Client(registry="memory://x", balancer="fastest")
    with pytest.raises(ValueError, match="exactly one"):
        Client(target="127.0.0.1:1", registry="memory://x")
    with pytest.raises(ValueError, match="exactly one"):
        Client()


class SickWho(Who, name="who"):
    @rpc
    async def am_i(self) -> str:
        raise RpcError(StatusCode.UNAVAILABLE, "backend of this instance is down")


async def test_failing_instance_is_ejected_after_five_failures(servers: list[Server]) -> None:
    sick = Server([SickWho("sick")], middleware=[], registry="memory://d")
    await sick.start()
    try:
        async with Client(registry="memory://d", balancer="round_robin") as c:
            who = c.proxy(Who)
            outcomes = []
            for _ in range(60):
                try:
                    outcomes.append(await who.am_i())
                except RpcError as exc:
                    assert exc.code is StatusCode.UNAVAILABLE
                    outcomes.append("error")
            # Five consecutive failures of the sick instance eject it; after that, no failures.
            assert outcomes.count("error") == 5
            assert "error" not in outcomes[20:]
            eps = c._services["who"]
            sick_key = next(n.key for n in eps.nodes if n.peer.address == sick.address)
            assert eps.outliers.is_ejected(sick_key, asyncio.get_running_loop().time())
    finally:
        await sick.stop(grace=1)


async def test_zone_preference_with_failover() -> None:
    reset()
    here = Server([Who("near")], middleware=[], registry="memory://z", zone="eu-1")
    there = Server([Who("far")], middleware=[], registry="memory://z", zone="us-1")
    await here.start()
    await there.start()
    try:
        async with Client(registry="memory://z", zone="eu-1") as c:
            assert {await c.proxy(Who).am_i() for _ in range(10)} == {"near"}
            await here.stop(grace=1)  # the local zone empties: fail over to the others
            for _ in range(100):
                await asyncio.sleep(0)
            assert {await c.proxy(Who).am_i() for _ in range(5)} == {"far"}
    finally:
        await here.stop(grace=1)
        await there.stop(grace=1)


async def test_balancer_chosen_per_call(servers: list[Server]) -> None:
    async with Client(registry="memory://d", balancer="p2c") as c:
        rr = c.proxy(Who).with_options(balancer="round_robin")
        assert collections.Counter([await rr.am_i() for _ in range(10)]) == {"a": 5, "b": 5}
        pinned = c.proxy(Who).with_options(balancer="consistent_hash", hash_key="ann")
        assert len({await pinned.am_i() for _ in range(10)}) == 1
        with pytest.raises(ValueError, match="round_robin"):
            c.proxy(Who).with_options(balancer="fastest")
