"""The registry-amnesia guard: after a watch reconnects, instances known before are held for the
grace period unless the new registry shows them; its word about anything it shows is final."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from meshkit.discovery.amnesia import AmnesiaGuard
from meshkit.discovery.events import WATCH_EVENTS
from meshkit.discovery.instance import Instance
from meshkit.errors import RpcError, StatusCode
from meshkit.rpc.endpoints import DEFAULT_REGISTRY_TTL, Endpoints, amnesia_grace, watch_service
from meshkit.transport.backoff import Backoff, BackoffPolicy


def _instance(n: int, healthy: bool = True) -> Instance:
    return Instance(service="svc", host="127.0.0.1", port=9000 + n, id=f"i{n}", healthy=healthy)


A, B, C = _instance(1), _instance(2), _instance(3)


def _ids(instances: list[Instance]) -> list[str]:
    return [i.id for i in instances]


def test_without_a_reconnect_the_snapshot_is_the_view() -> None:
    guard = AmnesiaGuard(5.0)
    assert _ids(guard.view([A], 0.0)) == ["i1"]
    assert _ids(guard.view([], 1.0)) == []
    assert guard.deadline is None


def test_an_empty_registry_after_a_reconnect_does_not_empty_the_view() -> None:
    guard = AmnesiaGuard(5.0)
    guard.reconnected([A, B], now=100.0)
    assert _ids(guard.view([], 100.0)) == ["i1", "i2"]
    assert guard.deadline == 105.0 and guard.held == 2
    # A re-registers: it is the registry's again; B is still held.
    assert _ids(guard.view([A], 101.0)) == ["i1", "i2"]
    assert guard.held == 1
    # The grace period ends: the registry's view, B or not.
    assert _ids(guard.view([A], 105.0)) == ["i1"]
    assert guard.deadline is None


def test_an_instance_the_registry_shows_again_is_no_longer_held() -> None:
    guard = AmnesiaGuard(5.0)
    guard.reconnected([A, B], now=0.0)
    assert _ids(guard.view([A, B], 0.5)) == ["i1", "i2"]
    assert guard.deadline is None
    # Shown once, its removal is final even inside the grace period.
    assert _ids(guard.view([A], 1.0)) == ["i1"]


def test_the_registry_state_of_a_shown_instance_wins_over_the_held_copy() -> None:
    guard = AmnesiaGuard(5.0)
    guard.reconnected([A, B], now=0.0)
    sick = _instance(2, healthy=False)
    view = guard.view([sick], 1.0)
    assert [(i.id, i.healthy) for i in view] == [("i2", False), ("i1", True)]


def test_a_second_reconnect_holds_newly_known_instances_but_keeps_the_old_deadlines() -> None:
    guard = AmnesiaGuard(5.0)
    guard.reconnected([A, B], now=0.0)
    view = guard.view([C], 1.0)
    assert _ids(view) == ["i3", "i1", "i2"]
    guard.reconnected(view, now=4.0)  # C is held from now; A and B still until 5
    assert _ids(guard.view([], 4.5)) == ["i3", "i1", "i2"]
    assert _ids(guard.view([], 5.0)) == ["i3"]
    assert _ids(guard.view([], 9.0)) == []


def test_reconnecting_again_and_again_does_not_hold_an_instance_for_ever() -> None:
    guard = AmnesiaGuard(1.0)
    guard.reconnected([A], now=0.0)
    for step in range(1, 20):
        now = step * 0.25
        view = guard.view([B], now)
        guard.reconnected(view, now)
    assert _ids(guard.view([B], 5.0)) == ["i2"]


def test_let_go_ends_the_grace_period() -> None:
    guard = AmnesiaGuard(5.0)
    guard.reconnected([A], now=0.0)
    guard.reconnected([A, B], now=1.0)
    assert guard.deadline == 5.0
    guard.let_go(5.0)  # its timer: A goes, B (held since 1.0) stays until 6.0
    assert _ids(guard.view([], 5.0)) == ["i2"] and guard.deadline == 6.0


def test_a_negative_grace_is_refused() -> None:
    with pytest.raises(ValueError, match="grace must be >= 0"):
        AmnesiaGuard(-1)


def test_the_grace_period_is_the_ttl_of_a_registry_that_forgets_and_zero_otherwise() -> None:
    class Forgetful:
        forgets_on_restart = True
        ttl = 3

    class ForgetfulWithoutTtl:
        forgets_on_restart = True
        ttl = None

    class Durable:  # etcd, ZooKeeper: their answer after a reconnect is the truth
        forgets_on_restart = False
        ttl = 10

    assert amnesia_grace(Forgetful()) == 3.0  # type: ignore[arg-type]
    assert amnesia_grace(ForgetfulWithoutTtl()) == DEFAULT_REGISTRY_TTL  # type: ignore[arg-type]
    assert amnesia_grace(Durable()) == 0.0  # type: ignore[arg-type]


def test_only_the_builtin_registry_forgets_on_restart() -> None:
    from meshkit.discovery.etcd import EtcdRegistry
    from meshkit.discovery.memory import MemoryRegistry
    from meshkit.discovery.zookeeper import ZooKeeperRegistry
    from meshkit.registry import BuiltinRegistry

    assert BuiltinRegistry.forgets_on_restart
    assert not EtcdRegistry.forgets_on_restart
    assert not ZooKeeperRegistry.forgets_on_restart
    assert not MemoryRegistry.forgets_on_restart


class _Registry:
    """Each watch yields what is queued; an exception ends it."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()

    def watch(self, service: str) -> Any:
        registry = self

        class Watch:
            def __aiter__(self) -> AsyncIterator[list[Instance]]:
                return self._items()

            async def _items(self) -> AsyncIterator[list[Instance]]:
                while True:
                    item = await registry.queue.get()
                    if isinstance(item, BaseException):
                        raise item
                    yield item

            async def close(self) -> None:
                pass

        return Watch()


class _Peer:
    def __init__(self, address: str) -> None:
        self.address, self.in_flight = address, 0

    async def close(self) -> None:
        pass


async def _until(condition: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.005)  # polling a condition, not timing the outcome


async def _watching(grace: float) -> tuple[_Registry, Endpoints, asyncio.Task[None]]:
    registry = _Registry()
    eps = Endpoints("svc", "round_robin", _Peer, random.Random(0), warmup=0.0)  # type: ignore[arg-type]
    backoff = Backoff(BackoffPolicy(initial=0.001, multiplier=1.0, jitter=0.0, maximum=0.001))
    task = asyncio.create_task(watch_service(registry, eps, backoff, grace=grace))  # type: ignore[arg-type]
    registry.queue.put_nowait([A, B])
    await _until(lambda: [n.key for n in eps.nodes] == ["i1", "i2"])
    return registry, eps, task


async def test_the_watch_holds_known_instances_through_an_empty_restart() -> None:
    registry, eps, task = await _watching(grace=1e6)
    try:
        held = WATCH_EVENTS["svc", "held"]
        registry.queue.put_nowait(RpcError(StatusCode.UNAVAILABLE, "registry down"))
        registry.queue.put_nowait([])  # the restarted registry knows nothing yet
        await _until(lambda: WATCH_EVENTS["svc", "held"] == held + 2)
        assert [n.key for n in eps.nodes] == ["i1", "i2"], "the empty registry's first snapshot was believed"
        registry.queue.put_nowait([B])  # B registers again, then leaves for good: final at once
        registry.queue.put_nowait([])
        await _until(lambda: registry.queue.empty())
        await _until(lambda: [n.key for n in eps.nodes] == ["i1"])
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_held_instances_are_let_go_when_the_grace_period_ends_without_a_snapshot() -> None:
    grace = 0.3
    registry, eps, task = await _watching(grace=grace)
    try:
        loop = asyncio.get_running_loop()
        held = WATCH_EVENTS["svc", "held"]
        reconnected = loop.time()
        registry.queue.put_nowait(RpcError(StatusCode.UNAVAILABLE, "registry down"))
        registry.queue.put_nowait([B])
        await _until(lambda: WATCH_EVENTS["svc", "held"] == held + 1)
        assert sorted(n.key for n in eps.nodes) == ["i1", "i2"], "A was not held after the reconnect"
        await _until(lambda: [n.key for n in eps.nodes] == ["i2"])  # the timer applied [B]...
        assert registry.queue.empty()  # ...with no snapshot since: the grace period's end let A go
        assert loop.time() - reconnected >= grace  # and not before it ended
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
