"""A half-open breaker closes only on a probe that succeeded: probes the caller gave up on do not
close it, a probe failing with an exception other than an RpcError does not leave it half-open for
ever, and a hedge it refuses does not abort the probe already in flight."""

from __future__ import annotations

import asyncio
import types
from typing import Any

import pytest

from meshkit import Client, RpcError, Server, StatusCode
from meshkit.policy import Breaker, ClientRule, Retry
from meshkit.testing import FakeClock
from tests.policy.policies import client_policy
from tests.policy.services import Stock


async def _until(condition: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        assert loop.time() < end, "condition not reached in time"
        await asyncio.sleep(0.001)


async def _open_breaker(proxy: Any, stock: Stock, n: int) -> None:
    stock.error = StatusCode.INTERNAL
    for _ in range(n):
        with pytest.raises(RpcError, match="on purpose"):
            await proxy.peek("x")
    stock.error = None


async def test_probes_the_caller_gave_up_on_do_not_close_the_breaker() -> None:
    clock = FakeClock()
    stock = Stock()
    rule = ClientRule(breaker=Breaker(min_calls=2, open_for=5, half_open_probes=2), retry=Retry(max_attempts=1))
    p = client_policy(clock, stock__peek=rule)
    async with Server([stock], middleware=[]) as server, Client(target=server.address, policy=p) as client:
        proxy = client.proxy(Stock)
        await _open_breaker(proxy, stock, 2)
        assert p.events.states["stock.peek"] == "open"
        clock.advance(5)
        stock.gate = asyncio.Event()  # the backend now hangs
        probes = [asyncio.create_task(proxy.peek(str(i))) for i in range(2)]
        while stock.calls < 4:
            await asyncio.sleep(0.001)
        for probe in probes:
            probe.cancel()  # e.g. asyncio.timeout() around the call
        await asyncio.gather(*probes, return_exceptions=True)
        stock.gate.set()
        # No probe ever succeeded: the breaker must not be closed.
        assert p.events.states["stock.peek"] != "closed"


async def test_a_probe_failing_with_another_exception_does_not_wedge_the_breaker() -> None:
    clock = FakeClock()
    p = client_policy(clock, stock__peek=ClientRule(breaker=Breaker(min_calls=1, open_for=5, half_open_probes=1)))
    failures = {"mode": "rpc"}

    async def terminal(call: Any) -> str:
        if failures["mode"] == "rpc":
            raise RpcError(StatusCode.INTERNAL, "down")
        if failures["mode"] == "other":
            raise OSError("a middleware after the guard failed")
        return "ok"

    guard = p.client_middleware()(terminal)
    options = types.SimpleNamespace(idempotent=False)
    spec = types.SimpleNamespace(qualname="stock.peek", options=options)

    def call() -> Any:
        return types.SimpleNamespace(spec=spec, deadline=None, peer="", avoid=None, timeout=None)

    with pytest.raises(RpcError):
        await guard(call())  # opens the breaker
    clock.advance(5)
    failures["mode"] = "other"
    with pytest.raises(OSError):
        await guard(call())  # the only probe: fails with something else
    failures["mode"] = "ok"
    clock.advance(3600)
    assert await guard(call()) == "ok"


async def test_a_hedge_refused_by_the_breaker_does_not_abort_the_copy_in_flight() -> None:
    clock = FakeClock()
    stock = Stock()
    rule = ClientRule(
        breaker=Breaker(min_calls=1, open_for=5, half_open_probes=1),
        retry=Retry(max_attempts=2, hedge_after=0.02),
    )
    p = client_policy(clock, stock__flaky=rule)
    async with Server([stock], middleware=[]) as server, Client(target=server.address, policy=p) as client:
        proxy = client.proxy(Stock)
        stock.fail_first = 1
        with pytest.raises(RpcError):
            await proxy.flaky("x")  # processed UNAVAILABLE: opens the breaker (no retry: budget/hedge fail)
        assert p.events.states["stock.flaky"] == "open"
        clock.advance(5)
        stock.hang = asyncio.Event()
        hedges = p.hedges
        call = asyncio.create_task(proxy.flaky("y"))  # the half-open probe; it is slow
        await _until(lambda: p.hedges == hedges + 1)  # the hedge fired...
        calls = stock.calls
        # ...and the (half-open) breaker refused it: a call on the same connection, sent after the
        # hedge would have been, reaches the server alone (peek counts itself in stock.calls).
        assert await proxy.peek("sync") == "sync"
        assert stock.calls == calls + 1, "the hedge reached the server: the breaker did not refuse it"
        stock.hang.set()
        assert await call == "y"  # the refused hedge did not abort the probe in flight
        assert p.hedges == hedges + 1
