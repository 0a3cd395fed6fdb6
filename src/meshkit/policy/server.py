"""The serving side's guard: rate limits per method and per caller, a bulkhead per method and
the adaptive shedder, in one middleware.

Refusals are decided before the handler runs and raised synchronously (no coroutine is made for
a refused call): RESOURCE_EXHAUSTED, ``not_processed`` (safe to send elsewhere), with
``details = {"reason": ..., "retry_after": seconds}``. A method with ``@rpc(fallback=…)``
answers with its fallback instead.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from meshkit.errors import AdmissionRefused as AdmissionRefused  # re-exported: its home is errors
from meshkit.errors import RpcError, StatusCode
from meshkit.policy.caches import Cache
from meshkit.policy.config import Limit, ServerRule, resolve
from meshkit.protocol.metadata import CALLER
from meshkit.resilience.bulkhead import Bulkhead
from meshkit.resilience.token_bucket import TokenBucket

if TYPE_CHECKING:
    from meshkit.policy.runtime import Policy

Handler = Callable[[Any], Awaitable[Any]]
#: Per-caller buckets kept per method (least recently used ones are dropped beyond this).
MAX_CALLERS = 10_000


class _Plan:
    __slots__ = ("bulkhead", "caller_buckets", "caller_limit", "dry", "limit", "shared", "shedder", "trivial")

    def __init__(self, policy: Policy, qualname: str, rule: ServerRule, streaming: bool) -> None:
        self.limit = policy.bucket(f"server:{qualname}", rule.limit) if rule.limit is not None else None
        self.shared = rule.limit is not None and rule.limit.shared
        self.caller_limit: Limit | None = rule.caller_limit
        self.caller_buckets: collections.OrderedDict[str, Any] = collections.OrderedDict()
        self.bulkhead = Bulkhead(rule.max_concurrency) if rule.max_concurrency is not None else None
        # Streams are long-lived: their duration says nothing about overload, so they are not shed.
        self.shedder = None if streaming else policy.shedder
        self.trivial = self.limit is None and self.caller_limit is None and self.bulkhead is None
        #: Dry run: a refusal is counted (``Policy.would_refuse``) and the call goes on.
        self.dry = rule.dry_run


def refusal(qualname: str, reason: str, retry_after: float, what: str) -> RpcError:
    return AdmissionRefused(
        StatusCode.RESOURCE_EXHAUSTED,
        f"{qualname}: {what}; retry after {retry_after:.3f}s",
        {"reason": reason, "retry_after": round(retry_after, 6)},
        not_processed=True,
    )


async def _awaitable(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def server_guard(policy: Policy) -> Callable[[Handler], Handler]:
    clock = policy.clock
    plans = Cache()  # qualname -> its plan; a live config drops the plans whose rules it changes
    policy._server_plans.add(plans)
    waiting = policy.waiting

    def middleware(next_handler: Handler) -> Handler:
        def degrade(call: Any, error: RpcError) -> Awaitable[Any]:
            fallback = call.fallback
            if fallback is None:
                raise error
            policy.actions["fallback"] += 1
            return _awaitable(fallback(call.args))

        def caller_of(call: Any) -> str:
            caller = call.metadata.get(CALLER)
            if isinstance(caller, str) and caller:
                return caller
            peer: str = call.peer
            return peer.rpartition(":")[0] or peer

        def handler(call: Any) -> Awaitable[Any]:
            qualname = call.spec.qualname
            plan = plans.get(qualname)
            if plan is None:
                rule = resolve(policy.config.server, qualname, ServerRule)
                plan = plans[qualname] = _Plan(policy, qualname, rule, call.spec.streaming)
            shedder = plan.shedder
            if plan.trivial and shedder is None:
                return next_handler(call)
            now = clock()
            counted = False  # a dry-run rule counted this call already
            if plan.caller_limit is not None:
                who = caller_of(call)
                bucket = plan.caller_buckets.get(who)
                if bucket is None:
                    if len(plan.caller_buckets) >= MAX_CALLERS:
                        plan.caller_buckets.popitem(last=False)
                    limit = plan.caller_limit
                    bucket = plan.caller_buckets[who] = TokenBucket(limit.per_second, limit.size, now)
                else:
                    plan.caller_buckets.move_to_end(who)
                ok, wait = bucket.try_acquire(now)
                if not ok:
                    if not plan.dry:
                        policy.rejected["caller_limit"] += 1
                        return degrade(
                            call, refusal(qualname, "caller_limit", wait, f"rate limit of caller {who!r} reached")
                        )
                    # Dry run: counted once, and the call goes on as enforce would not have let it
                    # (the later checks of this rule skip it; the shedder still sees it: it is load).
                    policy.count_dry_run(f"server:{qualname}", "caller_limit")
                    counted = True
            if plan.limit is not None and not plan.shared and not counted:
                ok, wait = plan.limit.try_acquire(now)
                if not ok:
                    if not plan.dry:
                        policy.rejected["limit"] += 1
                        return degrade(call, refusal(qualname, "limit", wait, "rate limit reached"))
                    policy.count_dry_run(f"server:{qualname}", "limit")
                    counted = True
            bulkhead = plan.bulkhead
            if bulkhead is not None and not bulkhead.try_acquire():
                if not plan.dry:
                    policy.rejected["bulkhead"] += 1
                    return degrade(
                        call,
                        refusal(qualname, "bulkhead", 0.0, f"{bulkhead.max_concurrent} calls already in progress"),
                    )
                if not counted:
                    policy.count_dry_run(f"server:{qualname}", "bulkhead")
                    counted = True
                bulkhead.in_flight += 1  # held over its maximum, so that the release balances
            if shedder is not None and not shedder.try_acquire():
                if shedder.try_enqueue():
                    waiter: asyncio.Future[float] = asyncio.get_running_loop().create_future()
                    waiting.append((now, waiter))
                    return queued(call, plan, waiter, counted)
                if bulkhead is not None:
                    bulkhead.release()
                policy.rejected["shed"] += 1
                return degrade(call, refusal(qualname, "shed", policy.shed_retry_after(), "server overloaded"))
            return run(call, plan, now, counted)

        async def queued(call: Any, plan: _Plan, waiter: asyncio.Future[float], counted: bool) -> Any:
            """Wait for a slot, then run; refused (as shed) if the wait outgrew two unloaded calls."""
            shedder = plan.shedder
            assert shedder is not None
            try:
                started = await waiter
            except asyncio.CancelledError:
                if waiter.cancelled():
                    shedder.drop_queued()  # still in the queue: leave it
                elif waiter.result() >= 0:
                    release(plan, clock())  # a slot was handed over just as the call was cancelled
                elif plan.bulkhead is not None:
                    plan.bulkhead.release()  # refused (no slot) and cancelled: only the bulkhead is held
                raise
            if started < 0:
                if plan.bulkhead is not None:
                    plan.bulkhead.release()
                policy.rejected["shed"] += 1
                return await degrade(
                    call, refusal(call.spec.qualname, "shed", policy.shed_retry_after(), "server overloaded (queued)")
                )
            return await run(call, plan, started, counted)

        async def run(call: Any, plan: _Plan, start: float, counted: bool = False) -> Any:
            try:
                if plan.shared and not counted:
                    assert plan.limit is not None
                    ok, wait = await plan.limit.try_acquire()
                    if not ok and plan.dry:
                        policy.count_dry_run(f"server:{call.spec.qualname}", "limit")
                    elif not ok:
                        policy.rejected["limit"] += 1
                        return await degrade(call, refusal(call.spec.qualname, "limit", wait, "rate limit reached"))
                return await next_handler(call)
            finally:
                release(plan, start)

        def release(plan: _Plan, start: float) -> None:
            if plan.bulkhead is not None:
                plan.bulkhead.release()
            shedder = plan.shedder
            if shedder is None:
                return
            end = clock()
            shedder.release(end, end - start)
            # Hand the slot to the oldest waiting call; those that waited too long are refused.
            max_wait = 2 * policy.shed_retry_after()
            while waiting and shedder.in_flight < shedder.limit:
                enqueued, waiter = waiting.popleft()
                if waiter.done():
                    continue  # cancelled while waiting, already uncounted
                if end - enqueued > max_wait:
                    shedder.drop_queued()
                    waiter.set_result(-1.0)
                    continue
                shedder.start_queued()
                waiter.set_result(end)
                break

        return handler

    return middleware
