"""Retries of one call: what failed retryably is sent again after a full-jitter backoff (never
sooner than the server's ``retry_after``), to another instance when there is one, while the
service's retry budget allows and **never past the call's deadline**: a retry that could not
finish in time is not started, and each attempt is sent with what is left of the budget.

Retryable: refused without being processed (UNAVAILABLE, or RESOURCE_EXHAUSTED from a limit or a
shedder), or UNAVAILABLE from an idempotent method. Never a breaker's own refusal.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from meshkit.errors import RESENDABLE, RpcError, StatusCode
from meshkit.policy.breaker import refused_by_breaker
from meshkit.policy.config import Retry
from meshkit.resilience.retry_budget import RetryBudget

if TYPE_CHECKING:
    from meshkit.policy.runtime import Policy

Handler = Callable[[Any], Awaitable[Any]]
Middleware = Callable[[Handler], Handler]


def retryable(exc: RpcError, idempotent: bool) -> bool:
    """Refused without being processed (UNAVAILABLE, or RESOURCE_EXHAUSTED from a shedder or
    limit), or UNAVAILABLE from an idempotent method. A breaker's own refusal is not retried."""
    if refused_by_breaker(exc):
        return False
    if exc.not_processed:
        return exc.code in RESENDABLE
    return idempotent and exc.code is StatusCode.UNAVAILABLE


def backoff(retry: Retry, attempts: int, exc: RpcError, rng: random.Random) -> float:
    """Full jitter (gRPC A6) after ``attempts`` tries, but at least the error's ``retry_after``."""
    ceiling = min(retry.max_backoff, retry.initial_backoff * retry.multiplier ** (attempts - 1))
    delay = rng.uniform(0, ceiling)
    hint = exc.details.get("retry_after") if isinstance(exc.details, dict) else None
    if isinstance(hint, (int, float)) and hint > delay:
        delay = float(hint)
    return delay


def remaining(call: Any) -> float | None:
    """Seconds left of the call's deadline (on the loop's clock), None without one."""
    deadline = call.deadline
    return None if deadline is None else deadline - asyncio.get_running_loop().time()


def retrying(policy: Policy, retry: Retry, budget: RetryBudget) -> Middleware:
    rng = policy.rng

    def middleware(next_handler: Handler) -> Handler:
        async def with_retries(call: Any) -> Any:
            idempotent = call.spec.options.idempotent
            attempts = 1
            while True:
                try:
                    result = await next_handler(call)
                except RpcError as exc:
                    if not retryable(exc, idempotent):
                        raise
                    budget.on_failure()
                    if attempts >= retry.max_attempts or not budget.can_retry():
                        raise
                    delay = backoff(retry, attempts, exc, rng)
                    left = remaining(call)
                    if left is not None and delay >= left:
                        raise  # the retry could not finish in time: fail now, clearly
                    policy.actions["retry"] += 1
                    if delay > 0:
                        await policy.sleep(delay)
                    attempts += 1
                    call.avoid = call.peer
                    left = remaining(call)
                    if left is not None:
                        if left <= 0:
                            raise
                        call.timeout = left
                    continue
                budget.on_success()
                return result

        return with_retries

    return middleware
