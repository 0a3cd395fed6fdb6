"""Regressions from the review of the resilience policies: each test pinned a bug before its fix."""

from __future__ import annotations

import asyncio
import socket
import types
from typing import Any

import pytest

from meshkit import Client, RpcError, Server, Service, StatusCode, rpc
from meshkit.policy import Limit, Policy, PolicyConfig, ServerRule, Shedding, Switches
from meshkit.testing import FakeClock
from tests.policy.services import Stock

NO_SHED = Shedding(enabled=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Front(Service, name="front"):
    """A handler that does its work, then calls a dependency that is down."""

    def __init__(self, downstream: str) -> None:
        self.orders = 0
        self.downstream = downstream

    @rpc
    async def order(self, item: str) -> str:
        self.orders += 1  # the side effect: an order was written
        async with Client(target=self.downstream, connect_timeout=0.2) as dep:
            await dep.call("stock", "peek", {"item": item})  # UNAVAILABLE, not_processed (refused connection)
        return "ordered"


async def test_a_handlers_downstream_refusal_does_not_mark_the_call_not_processed() -> None:
    front = Front(f"127.0.0.1:{_free_port()}")
    async with Server([front], middleware=[]) as server, Client(target=server.address) as client:
        with pytest.raises(RpcError) as err:
            await client.proxy(Front).order("x")
    # The handler ran (and wrote an order): the caller must not be told it is safe to resend.
    assert front.orders == 1
    assert not err.value.not_processed


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


async def test_a_caller_over_its_own_limit_does_not_drain_the_method_limit_of_others() -> None:
    rule = ServerRule(limit=Limit(rate=0.001, burst=3), caller_limit=Limit(rate=0.001, burst=1))
    p = Policy(PolicyConfig(shedding=NO_SHED, server={"stock.peek": rule}), clock=FakeClock(), switches=Switches())
    async with Server([Stock()], policy=p, middleware=[]) as server:
        async with (
            Client(target=server.address, caller="noisy") as noisy,
            Client(target=server.address, caller="quiet") as quiet,
        ):
            assert await noisy.proxy(Stock).peek("1") == "1"
            for _ in range(2):
                with pytest.raises(RpcError, match="rate limit of caller 'noisy'"):
                    await noisy.proxy(Stock).peek("x")  # refused by its own caller limit...
            # ...yet each refusal took a token of the method's bucket: the quiet caller is refused
            assert await quiet.proxy(Stock).peek("2") == "2"


async def test_the_admin_switch_still_answers_when_the_server_sheds() -> None:
    stock = Stock()
    stock.gate = asyncio.Event()
    switches = Switches()
    p = Policy(PolicyConfig(shedding=Shedding(initial_limit=2, min_limit=2)), switches=switches)
    token = {"authorization": "Bearer t"}
    async with (
        Server([stock], policy=p, middleware=[], admin=True, admin_token="t") as server,
        Client(target=server.address, metadata=token) as client,
    ):
        held = [asyncio.create_task(client.proxy(Stock).peek(str(i))) for i in range(2)]
        while stock.calls < 2:
            await asyncio.sleep(0.001)
        try:
            # Overloaded is exactly when the operator degrades a method: that call must get through.
            await client.call("meshkit-admin", "switch", {"name": "stock.peek", "on": True})
            assert "stock.peek" in switches
        finally:
            stock.gate.set()
            await asyncio.gather(*held, return_exceptions=True)


async def test_the_admin_service_cannot_switch_itself_off() -> None:
    switches = Switches()
    token = {"authorization": "Bearer t"}
    async with (
        Server([Stock()], switches=switches, admin=True, admin_token="t") as server,
        Client(target=server.address, metadata=token) as client,
    ):
        try:
            await client.call("meshkit-admin", "switch", {"name": "meshkit-admin.switch", "on": True})
        except RpcError as exc:
            assert exc.code is StatusCode.INVALID_ARGUMENT  # refusing is fine
            return
        # Accepted: then it must be possible to undo it the same way.
        await client.call("meshkit-admin", "switch", {"name": "meshkit-admin.switch", "on": False})
