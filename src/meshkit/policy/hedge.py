"""Hedging (gRPC A6's hedging policy) for idempotent unary methods: if no answer came within
``hedge_after``, another copy goes out, to another instance when there is one; the first success
wins and the other copies are cancelled and awaited, never left running. Hedges spend the retry
budget, stop at ``max_attempts`` copies and are not started once the deadline has passed. Calls
of other methods go to ``otherwise`` (the retries, or straight on).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from meshkit.errors import RpcError
from meshkit.policy.breaker import refused_by_breaker
from meshkit.policy.config import Retry
from meshkit.policy.retry import remaining, retryable
from meshkit.resilience.retry_budget import RetryBudget

if TYPE_CHECKING:
    from meshkit.policy.runtime import Policy

Handler = Callable[[Any], Awaitable[Any]]
Middleware = Callable[[Handler], Handler]


def hedging(policy: Policy, retry: Retry, budget: RetryBudget, otherwise: Middleware | None = None) -> Middleware:
    assert retry.hedge_after is not None
    delay: float = retry.hedge_after

    def middleware(next_handler: Handler) -> Handler:
        async def one(copy_of_call: Any) -> Any:  # a task of its own, whatever the handler returns
            return await next_handler(copy_of_call)

        async def hedged(call: Any) -> Any:
            loop = asyncio.get_running_loop()
            pending: set[asyncio.Task[Any]] = set()
            copies: list[Any] = []
            last: RpcError | None = None

            def launch() -> None:
                again = copy.copy(call)
                again.avoid = copies[-1].peer or None if copies else None  # another instance, if any
                left = remaining(call)
                if left is not None:
                    again.timeout = max(left, 0.001)
                copies.append(again)
                pending.add(loop.create_task(one(again)))

            launch()
            sent = 1
            try:
                while pending:
                    can_hedge = sent < retry.max_attempts
                    done, _ = await asyncio.wait(
                        pending, timeout=delay if can_hedge else None, return_when=asyncio.FIRST_COMPLETED
                    )
                    winner: asyncio.Task[Any] | None = None
                    fatal: BaseException | None = None
                    for task in done:  # every finished copy's outcome is retrieved
                        pending.discard(task)
                        exc = task.exception()
                        if exc is None:
                            winner = winner or task
                        elif isinstance(exc, RpcError) and retryable(exc, True):
                            budget.on_failure()
                            last = exc
                        elif isinstance(exc, RpcError) and refused_by_breaker(exc) and (pending or winner):
                            last = last or exc  # a copy the breaker refused: the others may still answer
                        else:
                            fatal = fatal or exc
                    if winner is not None:
                        budget.on_success()
                        return winner.result()
                    if fatal is not None:
                        raise fatal
                    if sent < retry.max_attempts and budget.can_retry() and (not done or not pending):
                        left = remaining(call)
                        if left is None or left > 0:
                            policy.actions["hedge"] += 1
                            sent += 1
                            launch()
                assert last is not None
                raise last
            finally:
                for task in pending:
                    task.cancel()
                if pending:  # the losers are cancelled and awaited, never left running
                    await asyncio.gather(*pending, return_exceptions=True)

        other = next_handler if otherwise is None else otherwise(next_handler)

        def either(call: Any) -> Awaitable[Any]:
            spec = call.spec
            return hedged(call) if spec.options.idempotent and not spec.streaming else other(call)

        return either

    return middleware
