from __future__ import annotations

import asyncio

import pytest

from meshkit.discovery import Instance, MemoryRegistry, open_registry
from meshkit.discovery.memory import reset


@pytest.fixture(autouse=True)
def fresh() -> None:
    reset()


async def test_register_resolve_deregister() -> None:
    r = open_registry("memory://a")
    i1 = Instance(service="s", host="127.0.0.1", port=1)
    i2 = Instance(service="s", host="127.0.0.1", port=2)
    await r.register(i1)
    await r.register(i2)
    assert {i.port for i in await r.resolve("s")} == {1, 2}
    assert await r.resolve("other") == []
    await r.deregister(i1)
    assert [i.port for i in await r.resolve("s")] == [2]


async def test_same_name_is_the_same_registry_and_names_are_separate() -> None:
    await MemoryRegistry("x").register(Instance(service="s", host="h", port=1))
    assert len(await open_registry("memory://x").resolve("s")) == 1
    assert await open_registry("memory://y").resolve("s") == []


async def test_watch_sends_current_then_every_change_in_order() -> None:
    r = MemoryRegistry("w")
    i1 = Instance(service="s", host="h", port=1)
    await r.register(i1)
    watcher = r.watch("s")
    seen: list[list[int]] = []

    async def consume() -> None:
        async for snap in watcher:
            seen.append(sorted(i.port for i in snap))

    task = asyncio.create_task(consume())
    i2 = Instance(service="s", host="h", port=2)
    await r.register(i2)
    await r.deregister(i1)
    await r.deregister(i2)
    await watcher.close()
    await asyncio.wait_for(task, 5)
    assert seen == [[1], [1, 2], [2], []]


def test_unknown_scheme() -> None:
    with pytest.raises(ValueError, match=r"unknown registry URL 'consul://x'.*memory://"):
        open_registry("consul://x")


def test_instance_defaults() -> None:
    i = Instance(service="s", host="h", port=9)
    assert i.address == "h:9" and i.key == i.id and len(i.id) == 16 and i.weight == 100 and i.healthy
