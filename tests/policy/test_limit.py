"""The client limit middleware (policy/limit.py): a local bucket refuses synchronously, before any
coroutine is made; a shared bucket's answer is awaited. Time is a FakeClock."""

from __future__ import annotations

import pytest

from meshkit import RpcError, StatusCode
from meshkit.policy.limit import limiting
from meshkit.resilience.token_bucket import TokenBucket
from tests.policy.calls import Script, fake_call, policy


@pytest.mark.parametrize(
    ("rate", "burst", "calls", "admitted", "retry_after"),
    [
        (1.0, 1.0, 1, 1, None),
        (1.0, 1.0, 2, 1, 1.0),
        (10.0, 3.0, 5, 3, 0.1),
        (0.5, 2.0, 3, 2, 2.0),
    ],
)
async def test_a_bucket_admits_its_burst_and_refuses_with_when_to_retry(
    rate: float, burst: float, calls: int, admitted: int, retry_after: float | None
) -> None:
    p, clock, _ = policy()
    terminal = Script([])
    handler = limiting(p, "stock.peek", TokenBucket(rate, burst, clock()))(terminal)
    refusals: list[RpcError] = []
    for _ in range(calls):
        try:
            awaitable = handler(fake_call())  # a refusal is raised here, not when awaited
        except RpcError as exc:
            refusals.append(exc)
        else:
            await awaitable
    assert len(terminal.calls) == admitted
    if retry_after is None:
        assert refusals == []
    else:
        exc = refusals[0]
        assert exc.code is StatusCode.RESOURCE_EXHAUSTED and exc.not_processed
        assert exc.details == {"reason": "client_limit", "retry_after": pytest.approx(retry_after)}
        assert "stock.peek" in exc.message


async def test_tokens_come_back_with_time() -> None:
    p, clock, _ = policy()
    handler = limiting(p, "stock.peek", TokenBucket(1.0, 1.0, clock()))(Script([]))
    await handler(fake_call())
    with pytest.raises(RpcError):
        handler(fake_call())
    clock.advance(1.0)
    assert await handler(fake_call()) == "ok"


class SharedBucket:
    """A stand-in for the Redis bucket: answers from a script, asynchronously."""

    def __init__(self, answers: list[tuple[bool, float]]) -> None:
        self.answers = answers

    async def try_acquire(self) -> tuple[bool, float]:
        return self.answers.pop(0)


async def test_a_shared_bucket_is_awaited_and_refuses_the_same_way() -> None:
    p, _, _ = policy()
    terminal = Script([])
    handler = limiting(p, "stock.peek", SharedBucket([(True, 0.0), (False, 0.5)]))(terminal)
    assert await handler(fake_call()) == "ok"
    with pytest.raises(RpcError) as err:
        await handler(fake_call())
    assert err.value.details == {"reason": "client_limit", "retry_after": 0.5}
    assert len(terminal.calls) == 1
