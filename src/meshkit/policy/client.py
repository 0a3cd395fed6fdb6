"""The calling side's guard: a rate limit per target, a breaker per (service, method), retries
with backoff and a budget, and hedging for idempotent methods, in one middleware.

Order, outermost first: switch -> limit -> retries/hedges -> breaker -> send. Each attempt passes
the breaker (so an open breaker stops the retries too); an attempt refused by the breaker is not
retried. Retries never outlive the call's deadline: every attempt is sent with what is left of it.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from meshkit.errors import RpcError, StatusCode
from meshkit.policy.config import Breaker, ClientRule, Retry, resolve
from meshkit.resilience.adaptive_throttle import AdaptiveThrottle
from meshkit.resilience.breaker import BreakerConfig, CircuitBreaker
from meshkit.resilience.token_bucket import TokenBucket

if TYPE_CHECKING:
    from meshkit.policy.runtime import Policy

Handler = Callable[[Any], Awaitable[Any]]

#: Outcomes that count against a classic breaker: the backend (or the way to it) failed, as
#: opposed to an answer the application chose (NOT_FOUND, INVALID_ARGUMENT, ... are successes to
#: a breaker). RESOURCE_EXHAUSTED is not among them: a server shedding load is busy, not broken,
#: and opening the breaker would turn "most calls refused" into "every call refused".
BREAKER_FAILURES = frozenset(
    {
        StatusCode.UNAVAILABLE,
        StatusCode.DEADLINE_EXCEEDED,
        StatusCode.INTERNAL,
        StatusCode.UNKNOWN,
        StatusCode.DATA_LOSS,
    }
)
#: What adaptive throttling counts as "not accepted": failures, and refusals of an overloaded
#: backend, which is exactly what it exists to stop sending.
THROTTLE_REJECTS = BREAKER_FAILURES | {StatusCode.RESOURCE_EXHAUSTED}
_RETRY_CODES = frozenset({StatusCode.UNAVAILABLE, StatusCode.RESOURCE_EXHAUSTED})


def _breaker_refusal(exc: RpcError) -> bool:
    return isinstance(exc.details, dict) and exc.details.get("reason") == "breaker_open"


def retryable(exc: RpcError, idempotent: bool) -> bool:
    """Refused without being processed (UNAVAILABLE, or RESOURCE_EXHAUSTED from a shedder or
    limit), or UNAVAILABLE from an idempotent method. A breaker's own refusal is not retried."""
    if _breaker_refusal(exc):
        return False
    if exc.not_processed:
        return exc.code in _RETRY_CODES
    return idempotent and exc.code is StatusCode.UNAVAILABLE


def breaker_config(b: Breaker) -> BreakerConfig:
    """The pure breaker's config: every setting of the same name."""
    names = {f.name for f in dataclasses.fields(BreakerConfig)} & set(b.__struct_fields__)
    return BreakerConfig(**{name: getattr(b, name) for name in names})


class _Plan:
    __slots__ = ("breaker", "budget", "limit", "name", "retry", "throttle")

    def __init__(self, policy: Policy, qualname: str, rule: ClientRule) -> None:
        self.name = qualname
        self.limit = policy.bucket(f"client:{qualname}", rule.limit) if rule.limit is not None else None
        b = rule.breaker or Breaker()
        self.breaker: CircuitBreaker | None = None
        self.throttle: AdaptiveThrottle | None = None
        if b.kind == "classic":
            self.breaker = CircuitBreaker(
                breaker_config(b), lambda old, new: policy.events.emit(qualname, old.value, new.value)
            )
            policy.events.states[qualname] = "closed"
        elif b.kind == "sre":
            self.throttle = AdaptiveThrottle(b.k, b.sre_window)
        self.retry = rule.retry or Retry()
        self.budget = policy.retry_budget(qualname.partition(".")[0], self.retry)


def client_guard(policy: Policy) -> Callable[[Handler], Handler]:
    clock = policy.clock
    plans: dict[str, _Plan] = {}
    rng = policy.rng

    def middleware(next_handler: Handler) -> Handler:
        async def attempt(call: Any, plan: _Plan) -> Any:
            """One try through the breaker."""
            breaker, throttle = plan.breaker, plan.throttle
            now = clock()
            if breaker is not None and not breaker.allow(now):
                wait = breaker.retry_after(now)
                raise RpcError(
                    StatusCode.UNAVAILABLE,
                    f"circuit breaker of {plan.name} is {breaker.state.value}; retry after {wait:.3f}s",
                    {"reason": "breaker_open", "retry_after": round(wait, 6)},
                    not_processed=True,
                )
            if throttle is not None and not throttle.allow(now, rng):
                raise RpcError(
                    StatusCode.UNAVAILABLE,
                    f"{plan.name}: throttled locally, the backend refuses most calls (adaptive throttling)",
                    {"reason": "breaker_open", "retry_after": 0.0},
                    not_processed=True,
                )
            try:
                result = await next_handler(call)
            except RpcError as exc:
                end = clock()
                if breaker is not None:
                    (breaker.on_failure if exc.code in BREAKER_FAILURES else breaker.on_success)(end, end - now)
                if throttle is not None:
                    throttle.on_result(end, exc.code not in THROTTLE_REJECTS)
                raise
            except BaseException:
                # Cancelled by its caller (a timeout, a hedge that lost) or failed with something
                # that is not an RPC outcome: no verdict on the backend, but a half-open probe
                # slot must not stay taken.
                if breaker is not None:
                    breaker.release_probe()
                raise
            end = clock()
            if breaker is not None:
                breaker.on_success(end, end - now)
            if throttle is not None:
                throttle.on_result(end, True)
            return result

        def backoff(retry: Retry, attempts: int, exc: RpcError) -> float:
            ceiling = min(retry.max_backoff, retry.initial_backoff * retry.multiplier ** (attempts - 1))
            delay = rng.uniform(0, ceiling)  # full jitter (A6)
            hint = exc.details.get("retry_after") if isinstance(exc.details, dict) else None
            if isinstance(hint, (int, float)) and hint > delay:
                delay = float(hint)
            return delay

        def remaining(call: Any) -> float | None:
            deadline = call.deadline
            return None if deadline is None else deadline - asyncio.get_running_loop().time()

        async def with_retries(call: Any, plan: _Plan) -> Any:
            retry, budget = plan.retry, plan.budget
            idempotent = call.spec.options.idempotent
            attempts = 1
            while True:
                try:
                    result = await attempt(call, plan)
                except RpcError as exc:
                    if not retryable(exc, idempotent):
                        raise
                    budget.on_failure()
                    if attempts >= retry.max_attempts or not budget.can_retry():
                        raise
                    delay = backoff(retry, attempts, exc)
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

        async def hedged(call: Any, plan: _Plan, delay: float) -> Any:
            """Idempotent calls: another copy after ``delay`` without an answer; first success wins."""
            retry, budget = plan.retry, plan.budget
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
                pending.add(loop.create_task(attempt(again, plan)))

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
                        elif isinstance(exc, RpcError) and _breaker_refusal(exc) and (pending or winner):
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

        def handler(call: Any) -> Awaitable[Any]:
            qualname = call.spec.qualname
            plan = plans.get(qualname)
            if plan is None:
                plan = plans[qualname] = _Plan(policy, qualname, resolve(policy.config.client, qualname, ClientRule))
            if qualname in policy.switches.on:
                raise RpcError(
                    StatusCode.UNAVAILABLE,
                    f"{qualname} is degraded by a switch in this process (meshkit switch {qualname} off restores it)",
                    {"reason": "switched"},
                    not_processed=True,
                )
            if plan.limit is not None and not isinstance(plan.limit, TokenBucket):
                return limited_shared(call, plan)
            if plan.limit is not None:
                ok, wait = plan.limit.try_acquire(clock())
                if not ok:
                    raise local_limit(qualname, wait)
            return guarded(call, plan)

        def guarded(call: Any, plan: _Plan) -> Awaitable[Any]:
            hedge_after = plan.retry.hedge_after
            if hedge_after is not None and call.spec.options.idempotent and not call.spec.streaming:
                return hedged(call, plan, hedge_after)
            if plan.retry.max_attempts > 1:
                return with_retries(call, plan)
            return attempt(call, plan)

        async def limited_shared(call: Any, plan: _Plan) -> Any:
            await policy.connect_shared()  # a no-op once connected (or found down)
            ok, wait = await plan.limit.try_acquire()  # type: ignore[union-attr]
            if not ok:
                raise local_limit(call.spec.qualname, wait)
            return await guarded(call, plan)

        return handler

    return middleware


def local_limit(qualname: str, wait: float) -> RpcError:
    return RpcError(
        StatusCode.RESOURCE_EXHAUSTED,
        f"{qualname}: this client's rate limit reached; retry after {wait:.3f}s",
        {"reason": "client_limit", "retry_after": round(wait, 6)},
        not_processed=True,
    )
