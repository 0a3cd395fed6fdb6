"""The calling side's guard: the governance middlewares of each target method, composed here.

Order, outermost first::

    switch -> limit -> retries / hedges -> breaker -> send
    (switches.py) (limit.py) (retry.py, hedge.py) (breaker.py)

Each is a function from handler to handler over a pure algorithm (``meshkit.resilience``). The
rule of a method is resolved (``resolve``) at its first call, and the stages it does not set are
left out of its chain. Each attempt passes the breaker, so an open breaker stops the retries
too; an attempt refused by the breaker is not retried. Retries and hedges never outlive the
call's deadline: every attempt is sent with what is left of it. Hedging is for idempotent
methods only; the others are retried.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from meshkit.policy.breaker import BREAKER_FAILURES, THROTTLE_REJECTS, breaker_config, breaker_for
from meshkit.policy.caches import Cache
from meshkit.policy.config import Breaker, ClientRule, Retry, resolve
from meshkit.policy.hedge import hedging
from meshkit.policy.limit import limiting, local_limit
from meshkit.policy.retry import retryable, retrying
from meshkit.policy.switches import switched_off

if TYPE_CHECKING:
    from meshkit.policy.runtime import Policy

__all__ = ["BREAKER_FAILURES", "THROTTLE_REJECTS", "breaker_config", "client_guard", "local_limit", "retryable"]

Handler = Callable[[Any], Awaitable[Any]]
Middleware = Callable[[Handler], Handler]


def stages(policy: Policy, qualname: str, rule: ClientRule) -> list[Middleware]:
    """The middlewares of one target method, outermost first; their state (bucket, breaker,
    budget) is shared by every chain built from them."""
    chain = [switched_off(policy.switches, qualname)]
    dry = rule.dry_run
    if dry:
        chain.append(forgetting(policy))
    if rule.limit is not None:
        chain.append(limiting(policy, qualname, policy.bucket(f"client:{qualname}", rule.limit), dry=dry))
    retry = rule.retry or Retry()
    budget = policy.retry_budget(qualname.partition(".")[0], retry)
    retries = retrying(policy, retry, budget) if retry.max_attempts > 1 else None
    if retry.hedge_after is not None:
        chain.append(hedging(policy, retry, budget, otherwise=retries))
    elif retries is not None:
        chain.append(retries)
    breaker = breaker_for(policy, qualname, rule.breaker or Breaker(), dry=dry)
    if breaker is not None:
        chain.append(breaker)
    return chain


def forgetting(policy: Policy) -> Middleware:
    """The outer stage of a dry-run rule: once the call ends, forget that it was counted."""

    def middleware(next_handler: Handler) -> Handler:
        async def forget(call: Any) -> Any:
            try:
                return await next_handler(call)
            finally:
                policy.unshadow(call)

        return forget

    return middleware


def client_guard(policy: Policy) -> Middleware:
    per_method = Cache()  # qualname -> its stages; a live config drops the ones it changes
    policy._client_stages.add(per_method)

    def middleware(next_handler: Handler) -> Handler:
        chains = Cache()
        policy._client_chains.add(chains)

        def build(qualname: str) -> Handler:
            parts = per_method.get(qualname)
            if parts is None:
                rule = resolve(policy.config.client, qualname, ClientRule)
                parts = per_method[qualname] = stages(policy, qualname, rule)
            handler = next_handler
            for stage in reversed(parts):
                handler = stage(handler)
            chains[qualname] = handler
            return handler

        def guard(call: Any) -> Awaitable[Any]:
            qualname = call.spec.qualname
            chain = chains.get(qualname)
            if chain is None:
                chain = build(qualname)
            return chain(call)

        return guard

    return middleware
