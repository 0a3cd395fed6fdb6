"""The breaker middleware: every attempt asks the (service, method)'s breaker first, and tells it
how the attempt ended. Written once over the :class:`~meshkit.resilience.breaker_protocol.Breaker`
protocol; ``breaker_for`` picks the algorithm a rule names (classic, SRE, off) and what counts as
a failure for it.

A refusal is UNAVAILABLE, ``not_processed``, ``details = {"reason": "breaker_open",
"retry_after": seconds}``; the retry middleware never retries it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from meshkit.errors import INSTANCE_FAILURES, RpcError, StatusCode
from meshkit.policy.config import Breaker as BreakerRule
from meshkit.resilience.adaptive_throttle import AdaptiveThrottle
from meshkit.resilience.breaker import BreakerConfig, BreakerState, CircuitBreaker
from meshkit.resilience.breaker_protocol import Breaker

if TYPE_CHECKING:
    from meshkit.policy.runtime import Policy

Handler = Callable[[Any], Awaitable[Any]]
Middleware = Callable[[Handler], Handler]

#: What counts against a classic breaker: the backend, or the way to it, failed.
BREAKER_FAILURES = INSTANCE_FAILURES
#: What adaptive throttling counts as "not accepted": failures, and refusals of an overloaded
#: backend, which is exactly what it exists to stop sending.
THROTTLE_REJECTS = INSTANCE_FAILURES | {StatusCode.RESOURCE_EXHAUSTED}
REASON = "breaker_open"


def refused_by_breaker(exc: RpcError) -> bool:
    return isinstance(exc.details, dict) and exc.details.get("reason") == REASON


def breaker_config(b: BreakerRule) -> BreakerConfig:
    """The pure breaker's config: every setting of the same name."""
    names = {f.name for f in dataclasses.fields(BreakerConfig)} & set(b.__struct_fields__)
    return BreakerConfig(**{name: getattr(b, name) for name in names})


def breaking(
    breaker: Breaker,
    failures: frozenset[StatusCode],
    refusal: Callable[[float], RpcError],
    clock: Callable[[], float],
    dry_run: Callable[..., bool] | None = None,
) -> Middleware:
    """``dry_run``: the rule is in dry-run mode: ``dry_run(call)`` is true for a call its rule
    counted already (it is sent on, unseen by the breaker, as under enforce it would never have
    reached it), and a call the breaker refuses is counted (``dry_run(None)`` marks it) and sent
    anyway."""

    def middleware(next_handler: Handler) -> Handler:
        async def attempt(call: Any) -> Any:
            if dry_run is not None and dry_run(call):
                return await next_handler(call)
            now = clock()
            if not breaker.allow(now):
                if dry_run is None:
                    raise refusal(now)
                dry_run(call, True)
                return await next_handler(call)
            try:
                result = await next_handler(call)
            except RpcError as exc:
                end = clock()
                (breaker.on_failure if exc.code in failures else breaker.on_success)(end, end - now)
                raise
            except BaseException:
                # Cancelled by its caller (a timeout, a hedge that lost) or failed with something
                # that is not an RPC outcome: no verdict, but a half-open probe slot is given back.
                breaker.release()
                raise
            end = clock()
            breaker.on_success(end, end - now)
            return result

        return attempt

    return middleware


def breaker_for(policy: Policy, qualname: str, rule: BreakerRule, *, dry: bool = False) -> Middleware | None:
    """The middleware of ``rule``'s breaker for ``qualname`` (None for ``kind = "off"``);
    ``dry``: counted, never refusing (a dry-run rule)."""
    counted: Callable[..., bool] | None = None
    if dry:
        rule_name = f"client:{qualname}"

        def counted(call: Any, refused: bool = False) -> bool:
            if refused:
                policy.shadow(call, rule_name, REASON)
                return True
            return policy.shadowed(call)

    if rule.kind == "classic":

        def changed(old: BreakerState, new: BreakerState) -> None:
            policy.events.emit(qualname, old.value, new.value)

        classic = CircuitBreaker(breaker_config(rule), changed)
        policy.events.states[qualname] = "closed"

        def open_(now: float) -> RpcError:
            wait = classic.retry_after(now)
            return RpcError(
                StatusCode.UNAVAILABLE,
                f"circuit breaker of {qualname} is {classic.state.value}; retry after {wait:.3f}s",
                {"reason": REASON, "retry_after": round(wait, 6)},
                not_processed=True,
            )

        return breaking(classic, BREAKER_FAILURES, open_, policy.clock, counted)
    if rule.kind == "sre":

        def throttled(now: float) -> RpcError:
            return RpcError(
                StatusCode.UNAVAILABLE,
                f"{qualname}: throttled locally, the backend refuses most calls (adaptive throttling)",
                {"reason": REASON, "retry_after": 0.0},
                not_processed=True,
            )

        throttle = AdaptiveThrottle(rule.k, rule.sre_window, rng=policy.rng)
        return breaking(throttle, THROTTLE_REJECTS, throttled, policy.clock, counted)
    return None
