"""The breaker middleware (policy/breaker.py): one adapter over the Breaker protocol, for the
classic breaker and for SRE adaptive throttling alike."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from meshkit import RpcError, StatusCode
from meshkit.policy import Breaker as BreakerRule
from meshkit.policy.breaker import BREAKER_FAILURES, THROTTLE_REJECTS, breaker_for, breaking, refused_by_breaker
from meshkit.testing import FakeClock
from tests.policy.calls import Script, fake_call, policy


class Recording:
    """A Breaker that admits while ``open`` is False and records what it was told."""

    def __init__(self) -> None:
        self.open = False
        self.told: list[tuple[str, float, float]] = []

    def allow(self, now: float) -> bool:
        return not self.open

    def on_success(self, now: float, latency: float = 0.0) -> None:
        self.told.append(("success", now, latency))

    def on_failure(self, now: float, latency: float = 0.0) -> None:
        self.told.append(("failure", now, latency))

    def release(self) -> None:
        self.told.append(("release", 0.0, 0.0))


class Slow:
    """A terminal that takes ``seconds`` on the fake clock, then ends with ``outcome``."""

    def __init__(self, clock: FakeClock, seconds: float, outcome: Any) -> None:
        self.clock, self.seconds, self.outcome = clock, seconds, outcome

    async def __call__(self, call: Any) -> Any:
        self.clock.advance(self.seconds)
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


def _refusal(now: float) -> RpcError:
    return RpcError(StatusCode.UNAVAILABLE, "open", {"reason": "breaker_open", "retry_after": 1.0}, not_processed=True)


@pytest.mark.parametrize(
    ("outcome", "told"),
    [
        ("ok", "success"),
        (RpcError(StatusCode.INTERNAL, "x"), "failure"),
        (RpcError(StatusCode.NOT_FOUND, "x"), "success"),  # an application answer
        (RpcError(StatusCode.RESOURCE_EXHAUSTED, "x"), "success"),  # busy, not broken (classic set)
        (OSError("not an RPC outcome"), "release"),
        (asyncio.CancelledError(), "release"),
    ],
)
async def test_each_outcome_is_reported_once_with_its_latency(outcome: Any, told: str) -> None:
    clock, breaker = FakeClock(10.0), Recording()
    guarded = breaking(breaker, BREAKER_FAILURES, _refusal, clock)(Slow(clock, 0.25, outcome))
    if isinstance(outcome, BaseException):
        with pytest.raises(type(outcome)):
            await guarded(fake_call())
    else:
        assert await guarded(fake_call()) == "ok"
    expected = (told, 0.0, 0.0) if told == "release" else (told, 10.25, 0.25)
    assert breaker.told == [expected]


async def test_a_refusal_is_raised_without_sending() -> None:
    clock, breaker, terminal = FakeClock(), Recording(), Script([])
    breaker.open = True
    with pytest.raises(RpcError) as err:
        await breaking(breaker, BREAKER_FAILURES, _refusal, clock)(terminal)(fake_call())
    assert refused_by_breaker(err.value) and err.value.not_processed
    assert terminal.calls == [] and breaker.told == []


def test_throttling_counts_overload_refusals_the_classic_breaker_does_not() -> None:
    assert StatusCode.RESOURCE_EXHAUSTED in THROTTLE_REJECTS and StatusCode.RESOURCE_EXHAUSTED not in BREAKER_FAILURES
    assert BREAKER_FAILURES < THROTTLE_REJECTS


async def test_a_classic_breaker_opens_refuses_with_its_retry_after_and_reports_its_state() -> None:
    p, clock, _ = policy()
    guarded = breaker_for(p, "stock.peek", BreakerRule(min_calls=2, open_for=5))
    assert guarded is not None and p.events.states["stock.peek"] == "closed"
    handler = guarded(Script([RpcError(StatusCode.INTERNAL, "down")] * 2))
    for _ in range(2):
        with pytest.raises(RpcError, match="down"):
            await handler(fake_call())
    assert p.events.states["stock.peek"] == "open"
    clock.advance(1)
    with pytest.raises(RpcError) as err:
        await handler(fake_call())
    assert err.value.code is StatusCode.UNAVAILABLE and err.value.not_processed
    assert err.value.details == {"reason": "breaker_open", "retry_after": 4.0}
    clock.advance(4)
    assert await handler(fake_call()) == "ok"  # a half-open probe


async def test_sre_throttling_refuses_locally_once_the_backend_refuses_most_calls() -> None:
    p, _, _ = policy()
    guarded = breaker_for(p, "stock.peek", BreakerRule(kind="sre"))
    assert guarded is not None
    handler = guarded(Script([RpcError(StatusCode.RESOURCE_EXHAUSTED, "busy")] * 1000))
    local = 0
    for _ in range(200):
        with pytest.raises(RpcError) as err:
            await handler(fake_call())
        local += err.value.details == {"reason": "breaker_open", "retry_after": 0.0}
    assert local > 100, "the throttle kept sending calls the backend refuses"


def test_kind_off_is_no_middleware_at_all() -> None:
    p, _, _ = policy()
    assert breaker_for(p, "stock.peek", BreakerRule(kind="off")) is None
    assert "stock.peek" not in p.events.states
