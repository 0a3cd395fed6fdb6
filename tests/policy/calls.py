"""Fake calls and terminal handlers for the middleware tests: only the fields the policy
middlewares read, and a terminal that answers from a script of outcomes."""

from __future__ import annotations

import asyncio
import random
import types
from collections.abc import Iterable
from typing import Any

from meshkit import RpcError, StatusCode
from meshkit.policy import ClientRule, Policy, PolicyConfig, Switches
from meshkit.testing import FakeClock, FakeSleep
from tests.policy.policies import NO_SHED


def fake_call(
    qualname: str = "stock.peek", *, idempotent: bool = False, streaming: bool = False, deadline: float | None = None
) -> Any:
    spec = types.SimpleNamespace(
        qualname=qualname, options=types.SimpleNamespace(idempotent=idempotent), streaming=streaming
    )
    return types.SimpleNamespace(spec=spec, deadline=deadline, peer="10.0.0.1:1", avoid=None, timeout=None)


def refused(code: StatusCode = StatusCode.UNAVAILABLE, retry_after: float | None = None) -> RpcError:
    details = None if retry_after is None else {"reason": "shed", "retry_after": retry_after}
    return RpcError(code, "refused", details, not_processed=True)


class Script:
    """A terminal handler: each call takes the next outcome (an exception is raised, an
    ``asyncio.Event`` is waited for and then answers "late", anything else is returned)."""

    def __init__(self, outcomes: Iterable[Any]) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[Any] = []

    async def __call__(self, call: Any) -> Any:
        self.calls.append(call)
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        if isinstance(outcome, BaseException):
            raise outcome
        if isinstance(outcome, asyncio.Event):
            await outcome.wait()
            return "late"
        return outcome


def policy(clock: FakeClock | None = None, **rules: ClientRule) -> tuple[Policy, FakeClock, FakeSleep]:
    clock = clock or FakeClock()
    sleep = FakeSleep(clock)
    config = PolicyConfig(shedding=NO_SHED, client={k.replace("__", "."): v for k, v in rules.items()})
    return Policy(config, clock=clock, sleep=sleep, rng=random.Random(7), switches=Switches()), clock, sleep
