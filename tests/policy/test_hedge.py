"""The hedging middleware (policy/hedge.py): another copy after ``hedge_after`` without an
answer, first success wins, losers cancelled and awaited; only for idempotent unary methods."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from meshkit import RpcError, StatusCode
from meshkit.policy import Retry
from meshkit.policy.hedge import hedging
from meshkit.resilience.retry_budget import RetryBudget
from tests.policy.calls import Script, fake_call, policy, refused

#: Short enough that a test waits for nothing; the outcomes never depend on how short.
SOON = 0.001


def _hedged(terminal: Any, max_attempts: int = 3, otherwise: Any = None) -> tuple[Any, Any]:
    p, _, _ = policy()
    handler = hedging(p, Retry(max_attempts=max_attempts, hedge_after=SOON), RetryBudget(), otherwise)(terminal)
    return p, handler


async def test_a_slow_copy_is_hedged_and_the_first_success_wins() -> None:
    hang = asyncio.Event()
    terminal = Script([hang, "fast"])
    p, handler = _hedged(terminal)
    assert await handler(fake_call(idempotent=True)) == "fast"
    assert p.hedges == 1 and len(terminal.calls) == 2
    assert terminal.calls[1].avoid == "10.0.0.1:1", "the hedge did not ask for another instance"
    assert not hang.is_set()  # the loser was cancelled, not answered


async def test_a_copy_that_fails_retryably_is_replaced_at_once() -> None:
    terminal = Script([refused(), "ok"])
    p, handler = _hedged(terminal)
    assert await handler(fake_call(idempotent=True)) == "ok"
    assert p.hedges == 1


async def test_copies_stop_at_max_attempts_and_the_last_error_is_raised() -> None:
    terminal = Script([refused()] * 10)
    p, handler = _hedged(terminal, max_attempts=3)
    with pytest.raises(RpcError, match="refused"):
        await handler(fake_call(idempotent=True))
    assert len(terminal.calls) == 3 and p.hedges == 2


async def test_a_fatal_error_ends_the_call() -> None:
    terminal = Script([RpcError(StatusCode.INVALID_ARGUMENT, "bad"), "ok"])
    _, handler = _hedged(terminal)
    with pytest.raises(RpcError, match="bad"):
        await handler(fake_call(idempotent=True))
    assert len(terminal.calls) == 1


async def test_a_hedge_the_breaker_refuses_leaves_the_copy_in_flight_to_answer() -> None:
    slow = asyncio.Event()
    breaker = RpcError(
        StatusCode.UNAVAILABLE, "open", {"reason": "breaker_open", "retry_after": 1.0}, not_processed=True
    )
    terminal = Script([slow, breaker])
    _, handler = _hedged(terminal, max_attempts=2)
    task = asyncio.ensure_future(handler(fake_call(idempotent=True)))
    while len(terminal.calls) < 2:
        await asyncio.sleep(0)  # let the hedge timer fire; no outcome depends on how long
    slow.set()
    assert await task == "late"


async def test_losers_are_cancelled_and_awaited_when_the_caller_gives_up() -> None:
    first, second = asyncio.Event(), asyncio.Event()
    terminal = Script([first, second])
    _, handler = _hedged(terminal, max_attempts=2)
    task = asyncio.ensure_future(handler(fake_call(idempotent=True)))
    while len(terminal.calls) < 2:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert all(t.done() for t in asyncio.all_tasks() if t is not asyncio.current_task())


@pytest.mark.parametrize(("idempotent", "streaming"), [(False, False), (True, True), (False, True)])
async def test_only_idempotent_unary_calls_are_hedged(idempotent: bool, streaming: bool) -> None:
    seen: list[str] = []

    def otherwise(next_handler: Any) -> Any:
        def handler(call: Any) -> Any:
            seen.append("otherwise")
            return next_handler(call)

        return handler

    p, handler = _hedged(Script(["ok"]), otherwise=otherwise)
    assert await handler(fake_call(idempotent=idempotent, streaming=streaming)) == "ok"
    assert seen == ["otherwise"] and p.hedges == 0


async def test_without_otherwise_other_calls_go_straight_on() -> None:
    terminal = Script([refused(), "ok"])
    p, handler = _hedged(terminal)
    with pytest.raises(RpcError, match="refused"):
        await handler(fake_call(idempotent=False))
    assert len(terminal.calls) == 1 and p.hedges == 0
