"""The built-in registry over real loopback: servers register, clients watch, leases expire."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator

import pytest

from meshkit import Client, Server
from meshkit.discovery import Instance, open_registry
from meshkit.registry import BuiltinRegistry, RegistryService
from meshkit.testing import FakeClock
from tests.rpc.services import Who


@pytest.fixture
async def registry() -> AsyncIterator[tuple[Server, RegistryService, FakeClock]]:
    clock = FakeClock()
    service = RegistryService(clock=clock, evict_every=3600)  # eviction driven by the test
    server = Server([service], middleware=[])
    await server.start()
    yield server, service, clock
    await service.stop()
    await server.stop(grace=1)


async def test_servers_register_and_clients_find_them(registry: tuple[Server, RegistryService, FakeClock]) -> None:
    reg_server, service, _ = registry
    url = f"meshkit://{reg_server.address}"
    servers = [Server([Who(label)], middleware=[], registry=url) for label in "ab"]
    for s in servers:
        await s.start()
    try:
        assert len(service.state.snapshot("who")) == 2
        async with Client(registry=url, balancer="round_robin") as c:
            got = collections.Counter([await c.proxy(Who).am_i() for _ in range(10)])
            assert got == {"a": 5, "b": 5}
            await servers[0].stop(grace=1)  # deregisters: the watch tells the client
            for _ in range(200):
                if len(service.state.snapshot("who")) == 1 and {await c.proxy(Who).am_i() for _ in range(4)} == {"b"}:
                    break
                await asyncio.sleep(0.01)
            assert {await c.proxy(Who).am_i() for _ in range(6)} == {"b"}
    finally:
        for s in servers:
            await s.stop(grace=1)


async def test_expired_lease_is_evicted_and_watchers_hear_it(
    registry: tuple[Server, RegistryService, FakeClock],
) -> None:
    reg_server, service, clock = registry
    backend = BuiltinRegistry(reg_server.address, ttl=5.0)
    instance = Instance(service="svc", host="127.0.0.1", port=1234)
    await backend.register(instance)
    watcher = backend.watch("svc")
    snapshots: list[list[str]] = []

    async def consume() -> None:
        async for snap in watcher:
            snapshots.append([i.id for i in snap])
            if not snap:
                return

    task = asyncio.create_task(consume())
    for _ in range(200):
        if snapshots:
            break
        await asyncio.sleep(0.01)
    assert snapshots == [[instance.id]]
    clock.now = 4.9
    assert service.evict_now() == []  # not before the TTL
    clock.now = 5.0
    assert [i.id for i in service.evict_now()] == [instance.id]
    await asyncio.wait_for(task, 5)
    assert snapshots == [[instance.id], []]
    await watcher.close()
    await backend.close()


async def test_unknown_lease_is_registered_again(registry: tuple[Server, RegistryService, FakeClock]) -> None:
    reg_server, service, _ = registry
    backend = BuiltinRegistry(reg_server.address, ttl=0.3)  # heartbeats every 0.1 s of real time
    instance = Instance(service="svc", host="127.0.0.1", port=1234)
    await backend.register(instance)
    service.state.leases.clear()  # as after a registry restart
    service.state._by_instance.clear()
    for _ in range(300):
        if service.state.snapshot("svc"):
            break
        await asyncio.sleep(0.01)
    assert [i.id for i in service.state.snapshot("svc")] == [instance.id]
    await backend.close()


async def test_bad_registrations_are_refused(registry: tuple[Server, RegistryService, FakeClock]) -> None:
    reg_server, _, _ = registry
    async with Client(target=reg_server.address) as c:
        from meshkit import RpcError, StatusCode

        with pytest.raises(RpcError) as info:
            await c.proxy(RegistryService).register(Instance(service="s", host="h", port=1), ttl=-1)
        assert info.value.code is StatusCode.INVALID_ARGUMENT
        with pytest.raises(RpcError) as info:
            await c.proxy(RegistryService).register(Instance(service="", host="h", port=1))
        assert info.value.code is StatusCode.INVALID_ARGUMENT


def test_url_opens_the_builtin_backend() -> None:
    assert isinstance(open_registry("meshkit://127.0.0.1:7070"), BuiltinRegistry)


async def test_registry_restart_clients_keep_calling_and_everyone_comes_back() -> None:
    service = RegistryService(evict_every=0.5)
    registry = Server([service], middleware=[])
    await registry.start()
    service.start()
    port = registry.port
    url = f"meshkit://127.0.0.1:{port}?ttl=3"
    servers = [Server([Who(label)], middleware=[], registry=url) for label in "ab"]
    for s in servers:
        await s.start()
    try:
        async with Client(registry=url, balancer="round_robin") as c:
            who = c.proxy(Who)
            assert {await who.am_i() for _ in range(4)} == {"a", "b"}
            await service.stop()
            await registry.stop(grace=0.1)  # the registry is gone
            # Unreachable is not empty: calls keep flowing to the instances the client knows.
            assert sorted(await asyncio.gather(*(who.am_i() for _ in range(20)))) == ["a"] * 10 + ["b"] * 10
            # The registry comes back empty, on the same port.
            service = RegistryService(evict_every=0.5)
            registry = Server([service], port=port, middleware=[])
            await registry.start()
            service.start()
            for _ in range(300):  # heartbeats find their leases unknown and register again
                if len(service.state.snapshot("who")) == 2:
                    break
                await asyncio.sleep(0.05)
            assert len(service.state.snapshot("who")) == 2
            assert {await who.am_i() for _ in range(6)} == {"a", "b"}
            # The client watches again (on its backoff schedule) and sees a newcomer.
            late = Server([Who("c")], middleware=[], registry=url)
            servers.append(late)
            await late.start()
            for _ in range(400):
                if len(c._services["who"].nodes) == 3:
                    break
                await asyncio.sleep(0.05)
            assert {await who.am_i() for _ in range(9)} == {"a", "b", "c"}
    finally:
        for s in servers:
            await s.stop(grace=1)
        await service.stop()
        await registry.stop(grace=0.1)


async def test_several_listed_registries_are_used_one_at_a_time() -> None:
    services = [RegistryService(evict_every=3600) for _ in range(2)]
    servers = [Server([svc], middleware=[]) for svc in services]
    for s in servers:
        await s.start()
    backend = BuiltinRegistry(",".join(s.address for s in servers), ttl=3)
    try:
        for port in range(1, 11):
            await backend.register(Instance(service="svc", host="127.0.0.1", port=port))
        counts = sorted(len(svc.state.snapshot("svc")) for svc in services)
        assert counts == [0, 10]  # all on one registry, none split across both
    finally:
        await backend.close()
        for s in servers:
            await s.stop(grace=0.1)


@pytest.mark.parametrize("ttl", [2.0, 10.0, 30.0])
async def test_the_registry_client_retries_at_least_every_third_of_a_ttl(ttl: float) -> None:
    """After a long outage the default reconnect schedule (up to 120 s) would keep heartbeats,
    and so re-registration, away for far longer than clients hold missing instances (one TTL)."""
    registry = BuiltinRegistry("127.0.0.1:1", ttl=ttl)
    try:
        policy = registry._client.channel._backoff_policy
        assert policy.maximum == ttl / 3 and policy.initial <= ttl / 3
    finally:
        await registry.close()
