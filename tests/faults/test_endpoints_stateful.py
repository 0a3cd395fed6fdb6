"""Hypothesis stateful test of a client's registry cache (``Endpoints`` fed by ``watch_service``):
snapshots (instances joining, leaving, changing weight, going unhealthy, the empty set), watch
failures and restarts in any order. Invariants: the client's view is always exactly the last
snapshot the registry gave (healthy, weighted instances), plus, after a watch reconnected, the
instances known before it that the registry has not shown since (registry amnesia: held for the
grace period, here either 0 or longer than any program); a failure never drops an instance; peers
of instances that left are closed and no peer is shared by two addresses."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from meshkit.discovery.instance import Instance
from meshkit.errors import RpcError, StatusCode
from meshkit.rpc.endpoints import Endpoints, watch_service
from meshkit.transport.backoff import Backoff, BackoffPolicy
from tests.faults.conftest import Reliability

POOL = [Instance(service="svc", host="127.0.0.1", port=9000 + i, id=f"i{i}") for i in range(6)]
_END = object()


class _Peer:
    def __init__(self, address: str) -> None:
        self.address = address
        self.in_flight = 0
        self.closed = False

    async def close(self) -> None:
        self.closed = True


class _Watch:
    def __init__(self, queue: asyncio.Queue[Any]) -> None:
        self.queue = queue

    def __aiter__(self) -> AsyncIterator[list[Instance]]:
        return self._items()

    async def _items(self) -> AsyncIterator[list[Instance]]:
        while True:
            item = await self.queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item

    async def close(self) -> None:
        pass


class _Registry:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.watches = 0

    def watch(self, service: str) -> _Watch:
        self.watches += 1
        return _Watch(self.queue)


instance_lists = st.lists(
    st.builds(
        lambda i, weight, healthy: Instance(
            service="svc", host="127.0.0.1", port=POOL[i].port, id=POOL[i].id, weight=weight, healthy=healthy
        ),
        st.integers(0, len(POOL) - 1),
        st.sampled_from([0, 1, 100]),
        st.booleans(),
    ),
    max_size=len(POOL),
    unique_by=lambda i: i.id,
)


class CacheMachine(RuleBasedStateMachine):
    grace = 0.0

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.registry = _Registry()
        self.made: list[_Peer] = []

        def make_peer(address: str) -> Any:
            peer = _Peer(address)
            self.made.append(peer)
            return peer

        self.endpoints = Endpoints("svc", "round_robin", make_peer, random.Random(0), warmup=0.0)
        backoff = Backoff(BackoffPolicy(initial=0.001, multiplier=1.0, jitter=0.0, maximum=0.001))
        watch = watch_service(self.registry, self.endpoints, backoff, grace=self.grace)  # type: ignore[arg-type]
        self.task = self.loop.create_task(watch)
        self.expected: list[str] | None = None  # keys of the view (None: no snapshot yet)
        self.view: list[Instance] = []  # the instances the client should be using
        self.reconnected = False
        self.held: dict[str, Instance] = {}
        self._settle()

    def _settle(self) -> None:
        """Let the watch task handle everything queued (and restart after a failure)."""
        for _ in range(50):
            self.loop.run_until_complete(asyncio.sleep(0.002))
            if self.registry.queue.empty():
                break
        self.loop.run_until_complete(asyncio.sleep(0.003))

    def teardown(self) -> None:
        self.task.cancel()
        self.loop.run_until_complete(asyncio.gather(self.task, return_exceptions=True))
        self.loop.close()

    @rule(instances=instance_lists)
    def snapshot(self, instances: list[Instance]) -> None:
        self.registry.queue.put_nowait(instances)
        if self.reconnected and self.grace > 0:
            self.held = {i.id: i for i in self.view}
        self.reconnected = False
        for i in instances:
            self.held.pop(i.id, None)
        self.view = [i for i in [*instances, *self.held.values()] if i.healthy and i.weight > 0]
        self.expected = [i.id for i in self.view]
        self._settle()

    @rule()
    def the_watch_fails(self) -> None:
        before = self.registry.watches
        self.registry.queue.put_nowait(RpcError(StatusCode.UNAVAILABLE, "registry unreachable"))
        self._settle()
        assert self.registry.watches > before  # watched again
        self.reconnected = True

    @invariant()
    def the_view_is_the_last_snapshot(self) -> None:
        if self.expected is None:
            assert not self.endpoints.resolved
            return
        assert [n.key for n in self.endpoints.nodes] == self.expected
        assert (self.endpoints.only is not None) == (len(self.expected) == 1)

    @invariant()
    def peers_are_one_per_address_and_leavers_are_closed(self) -> None:
        live = {id(p) for p in self.endpoints.peers.values()}
        assert len(self.endpoints.peers) == len(live)
        for node in self.endpoints.nodes:
            assert self.endpoints.peers[node.peer.address] is node.peer
        for peer in self.made:
            if id(peer) not in live:
                assert peer.closed, peer.address


EXAMPLES, STEPS = 60, 30


class HoldingCacheMachine(CacheMachine):
    grace = 1e6


def test_the_registry_cache_follows_the_registry_and_survives_failures(reliability: Reliability) -> None:
    for machine in (CacheMachine, HoldingCacheMachine):
        run_state_machine_as_test(
            machine, settings=settings(max_examples=EXAMPLES // 2, stateful_step_count=STEPS, deadline=None)
        )
    reliability.record(
        "registry client cache (hypothesis, stateful)",
        f"{EXAMPLES} random programs of up to {STEPS} steps: snapshots (join, leave, weight 0, unhealthy, "
        "empty) and watch failures, in any order",
        "the view is exactly the last snapshot (plus, after a reconnect, the instances held against registry "
        "amnesia); a failure drops nothing; leavers' peers closed",
        "invariants held in every program",
    )
