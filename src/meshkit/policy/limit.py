"""The client's rate limit per target method (or service): a token bucket asked before anything
is sent, local or shared in Redis. A refusal is raised at once, without a coroutine:
RESOURCE_EXHAUSTED, ``not_processed``, ``details = {"reason": "client_limit", "retry_after": s}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from meshkit.errors import RpcError, StatusCode
from meshkit.resilience.token_bucket import TokenBucket

if TYPE_CHECKING:
    from meshkit.policy.runtime import Policy

Handler = Callable[[Any], Awaitable[Any]]
Middleware = Callable[[Handler], Handler]


def local_limit(qualname: str, wait: float) -> RpcError:
    return RpcError(
        StatusCode.RESOURCE_EXHAUSTED,
        f"{qualname}: this client's rate limit reached; retry after {wait:.3f}s",
        {"reason": "client_limit", "retry_after": round(wait, 6)},
        not_processed=True,
    )


def limiting(policy: Policy, qualname: str, bucket: Any, *, dry: bool = False) -> Middleware:
    """``bucket``: a :class:`TokenBucket`, or a shared (Redis) bucket whose answer is awaited.
    ``dry``: a dry-run rule, whose refusals are counted and let through."""
    clock = policy.clock
    rule = f"client:{qualname}"

    def middleware(next_handler: Handler) -> Handler:
        def limited(call: Any) -> Awaitable[Any]:
            ok, wait = bucket.try_acquire(clock())
            if not ok:
                if not dry:
                    raise local_limit(qualname, wait)
                policy.shadow(call, rule, "client_limit")
            return next_handler(call)

        async def limited_shared(call: Any) -> Any:
            await policy.connect_shared()  # a no-op once connected (or found down)
            ok, wait = await bucket.try_acquire()
            if not ok:
                if not dry:
                    raise local_limit(qualname, wait)
                policy.shadow(call, rule, "client_limit")
            return await next_handler(call)

        return limited if isinstance(bucket, TokenBucket) else limited_shared

    return middleware
