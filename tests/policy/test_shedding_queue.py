"""The shedder's queue: a queued call that is refused and then cancelled leaves the counts as they
were (it never held a slot, so it releases none), and servers sharing one policy hand a freed
slot to a call queued on any of them."""

from __future__ import annotations

import asyncio
import types
from typing import Any

import pytest

from meshkit import Client, Server
from meshkit.policy import Policy, PolicyConfig, Shedding, Switches
from meshkit.testing import FakeClock
from tests.policy.services import Stock


def _fake_call(qualname: str) -> Any:
    spec = types.SimpleNamespace(qualname=qualname, streaming=False)
    return types.SimpleNamespace(spec=spec, metadata={}, peer="1.2.3.4:5", fallback=None, args=None)


async def test_a_queued_call_refused_then_cancelled_does_not_release_a_slot_it_never_had() -> None:
    clock = FakeClock()
    config = PolicyConfig(shedding=Shedding(initial_limit=1, min_limit=1, queue_share=1.0))
    p = Policy(config, clock=clock, switches=Switches())
    shedder = p.shedder
    assert shedder is not None

    async def terminal(call: Any) -> str:
        return "done"

    guard = p.server_middleware()(terminal)
    first = guard(_fake_call("stock.peek"))  # admitted: in_flight 1 (the coroutine is not started yet)
    second = asyncio.ensure_future(guard(_fake_call("stock.peek")))  # queued
    await asyncio.sleep(0)
    assert shedder.in_flight == 1 and shedder.queued == 1
    clock.advance(1.0)  # the queued call has waited far longer than 2 x retry_after
    with pytest.raises(StopIteration):
        first.send(None)  # the first call ends: its release refuses the stale waiter (-1)
    second.cancel()  # e.g. its deadline fires in the same loop iteration
    await asyncio.gather(second, return_exceptions=True)
    assert (shedder.in_flight, shedder.queued) == (0, 0)


async def test_two_servers_sharing_a_policy_wake_each_others_queued_calls() -> None:
    a, b = Stock(), Stock()
    a.gate = asyncio.Event()
    config = PolicyConfig(shedding=Shedding(initial_limit=1, min_limit=1, queue_share=1.0))
    p = Policy(config, switches=Switches())
    async with Server([a], policy=p, middleware=[]) as sa, Server([b], policy=p, middleware=[]) as sb:
        async with Client(target=sa.address) as ca, Client(target=sb.address, timeout=None) as cb:
            held = asyncio.create_task(ca.proxy(Stock).peek("held"))
            while a.calls < 1:
                await asyncio.sleep(0.001)
            queued = asyncio.create_task(cb.proxy(Stock).peek("queued"))
            assert p.shedder is not None
            while p.shedder.queued < 1:
                await asyncio.sleep(0.001)
            a.gate.set()
            await held  # the slot is free now; the call queued on the other server must get it
            try:
                assert await asyncio.wait_for(asyncio.shield(queued), 1.0) == "queued"
            finally:
                queued.cancel()
                await asyncio.gather(queued, return_exceptions=True)
