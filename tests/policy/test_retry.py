"""The retry middleware (policy/retry.py): what is retried, how long it waits, the budget, and
never past the deadline. Sleeps are a FakeSleep: delays are recorded, none is waited."""

from __future__ import annotations

import asyncio
import random

import pytest

from meshkit import RpcError, StatusCode
from meshkit.policy import Retry
from meshkit.policy.retry import backoff, retryable, retrying
from meshkit.resilience.retry_budget import RetryBudget
from tests.policy.calls import Script, fake_call, policy, refused

BREAKER = RpcError(StatusCode.UNAVAILABLE, "open", {"reason": "breaker_open", "retry_after": 1.0}, not_processed=True)


@pytest.mark.parametrize(
    ("exc", "idempotent", "expected"),
    [
        (refused(StatusCode.UNAVAILABLE), False, True),  # never processed: safe for any method
        (refused(StatusCode.RESOURCE_EXHAUSTED), False, True),
        (refused(StatusCode.INVALID_ARGUMENT), True, False),  # would fail again
        (RpcError(StatusCode.UNAVAILABLE, "processed"), False, False),
        (RpcError(StatusCode.UNAVAILABLE, "processed"), True, True),
        (RpcError(StatusCode.RESOURCE_EXHAUSTED, "processed"), True, False),
        (RpcError(StatusCode.INTERNAL, "processed"), True, False),
        (BREAKER, True, False),  # a breaker's own refusal is never retried
    ],
)
def test_what_is_retried(exc: RpcError, idempotent: bool, expected: bool) -> None:
    assert retryable(exc, idempotent) is expected


@pytest.mark.parametrize("attempts", [1, 2, 3, 4, 8])
def test_backoff_is_full_jitter_under_a_doubling_ceiling(attempts: int) -> None:
    retry, rng = Retry(), random.Random(attempts)
    ceiling = min(retry.max_backoff, retry.initial_backoff * 2 ** (attempts - 1))
    delays = [backoff(retry, attempts, refused(), rng) for _ in range(200)]
    assert all(0 <= d <= ceiling for d in delays) and max(delays) > ceiling / 2


def test_backoff_is_never_sooner_than_the_servers_retry_after() -> None:
    assert backoff(Retry(), 1, refused(retry_after=0.7), random.Random(1)) == 0.7


@pytest.mark.parametrize(
    ("outcomes", "idempotent", "max_attempts", "sent", "answer"),
    [
        (["ok"], False, 3, 1, "ok"),
        ([refused(), "ok"], False, 3, 2, "ok"),
        ([refused(), refused(), refused()], False, 3, 3, None),
        ([refused(), refused()], False, 2, 2, None),
        ([RpcError(StatusCode.UNAVAILABLE, "processed"), "ok"], True, 3, 2, "ok"),
        ([RpcError(StatusCode.UNAVAILABLE, "processed"), "ok"], False, 3, 1, None),
        ([RpcError(StatusCode.NOT_FOUND, "no"), "ok"], True, 3, 1, None),
        ([BREAKER, "ok"], True, 3, 1, None),
    ],
)
async def test_attempts_sent(
    outcomes: list[object], idempotent: bool, max_attempts: int, sent: int, answer: str | None
) -> None:
    p, _, sleep = policy()
    terminal = Script(outcomes)
    handler = retrying(p, Retry(max_attempts=max_attempts), RetryBudget())(terminal)
    if answer is None:
        with pytest.raises(RpcError):
            await handler(fake_call(idempotent=idempotent))
    else:
        assert await handler(fake_call(idempotent=idempotent)) == answer
    assert len(terminal.calls) == sent
    assert p.retries == sent - 1 == len(sleep.delays)


async def test_a_retry_goes_elsewhere_with_what_is_left_of_the_deadline() -> None:
    p, _, _ = policy()
    call = fake_call(deadline=asyncio.get_running_loop().time() + 30.0)
    await retrying(p, Retry(), RetryBudget())(Script([refused(), "ok"]))(call)
    assert call.avoid == "10.0.0.1:1"
    assert call.timeout is not None and 29.0 < call.timeout <= 30.0


async def test_a_retry_that_could_not_finish_in_time_is_not_started() -> None:
    p, _, sleep = policy()
    terminal = Script([refused(retry_after=5.0), "ok"])
    call = fake_call(deadline=asyncio.get_running_loop().time() + 1.0)
    with pytest.raises(RpcError, match="refused"):
        await retrying(p, Retry(), RetryBudget())(terminal)(call)
    assert len(terminal.calls) == 1 and sleep.delays == [] and p.retries == 0


async def test_an_empty_budget_stops_retries() -> None:
    p, _, _ = policy()
    budget = RetryBudget(max_tokens=10, ratio=0.1)
    handler = retrying(p, Retry(max_attempts=5), budget)(Script([refused()] * 100))
    for _ in range(5):
        with pytest.raises(RpcError):
            await handler(fake_call())
    # 10 tokens, one per failure, retries only above 5: four retries in all, not 5 x 4.
    assert not budget.can_retry()
    assert p.retries == 4, "retries went on with the budget spent"
