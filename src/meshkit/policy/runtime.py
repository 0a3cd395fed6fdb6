"""``Policy``: a policy config plus the state it governs (buckets, breakers, budgets, the
shedder and its loop-lag probe), shared by the servers and clients of a process that use it."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from meshkit.policy import config as _config
from meshkit.policy.breaker import breaker_config
from meshkit.policy.caches import Cache
from meshkit.policy.client import client_guard
from meshkit.policy.config import Breaker, ClientRule, Limit, PolicyConfig, Retry, ServerRule, resolve
from meshkit.policy.events import POLICIES, BreakerEvents
from meshkit.policy.server import refusal, server_guard
from meshkit.policy.switches import Switches, process_switches
from meshkit.protocol.messages import encode_error
from meshkit.resilience.breaker import CircuitBreaker
from meshkit.resilience.retry_budget import RetryBudget
from meshkit.resilience.shedder import AdaptiveConcurrency
from meshkit.resilience.token_bucket import TokenBucket

if TYPE_CHECKING:
    from meshkit.resilience.redis_bucket import RedisLink

log = logging.getLogger("meshkit.policy")


def _weakly(listener: Callable[..., Any]) -> Callable[[], Any]:
    """A reference to ``listener``: weak for a bound method (a closed client's channel goes)."""
    if hasattr(listener, "__self__"):
        return weakref.WeakMethod(listener)
    return lambda: listener


def _pairs(old: dict[str, ClientRule], new: dict[str, ClientRule]) -> list[tuple[ClientRule, ClientRule]]:
    """The rules of both configs side by side, by key (an absent one as the empty rule)."""
    return [(old.get(key, ClientRule()), new.get(key, ClientRule())) for key in set(old) | set(new)]


def process_breakers() -> dict[str, str]:
    """The state of every breaker of every policy in this process, by name."""
    states: dict[str, str] = {}
    for policy in POLICIES.members():
        states.update(policy.events.states)
    return dict(sorted(states.items()))


class Policy:
    """The resilience policies of a process.

    ``Server(..., policy=p)`` guards what it serves (limits, bulkheads, shedding, fallbacks);
    ``Client(..., policy=p)`` guards what it calls (limits, breakers, retries, hedging). ``clock``
    (seconds, monotonic) and ``sleep`` are injectable, so tests drive time themselves.
    """

    def __init__(
        self,
        config: PolicyConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: random.Random | None = None,
        switches: Switches | None = None,
        redis: Any = None,
    ) -> None:
        self.config = config or PolicyConfig()
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.switches = switches if switches is not None else process_switches()
        for name, on in self.config.switches.items():
            self.switches.set(name, on)
        self.events = BreakerEvents()
        s = self.config.shedding
        self.shedder: AdaptiveConcurrency | None = None
        if s.enabled:
            self.shedder = AdaptiveConcurrency(s.shedder_config(), clock())
        if redis is None and self.config.redis is None and self.config.shared_limits():
            raise _config.PolicyError("a limit is shared (shared = true) but the policy names no redis URL")
        self._redis = redis
        #: Made here, not in a call, when a limit is shared: importing redis-py takes ~150 ms of the
        #: loop, which a call must not spend holding a shedder slot. ``start()`` connects it.
        self._redis_link: RedisLink | None = self._link() if self.config.shared_limits() else None
        self._connecting: asyncio.Future[None] | None = None
        #: Calls waiting for a shedder slot, oldest first: (enqueued at, future of their start time).
        #: Here, not per server: servers sharing this policy share its shedder's slots.
        self.waiting: collections.deque[tuple[float, asyncio.Future[float]]] = collections.deque()
        self._budgets: dict[str, RetryBudget] = {}
        self._refusals: dict[tuple[str, float], bytes] = {}
        self._probe: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._users = 0
        #: Counters (observability reads them): refusals by reason; retries, hedges, fallbacks.
        self.rejected: collections.Counter[str] = collections.Counter()
        self.actions: collections.Counter[str] = collections.Counter()
        #: What dry-run rules would have refused, by (rule, reason); rule is "server:svc.method"
        #: or "client:svc.method" (the method called, under whichever rule key matched it).
        self.would_refuse: collections.Counter[tuple[str, str]] = collections.Counter()
        #: Where the config came from and which revision of it runs (a configuration store's
        #: revision when the policy is live, see meshkit.config.live; None for a file or code).
        #: Calls (by id, while they run) a client's dry-run rule has counted already.
        self._shadowed: set[int] = set()
        self.source: str | None = None
        self.revision: int | None = None
        #: The per-method state the guards built from the config (server plans; client stages and
        #: the chains made of them), so :meth:`apply` can drop what a new config changes.
        self._server_plans: weakref.WeakSet[Cache] = weakref.WeakSet()
        self._client_stages: weakref.WeakSet[Cache] = weakref.WeakSet()
        self._client_chains: weakref.WeakSet[Cache] = weakref.WeakSet()
        self._breaker_listeners: list[Callable[[], Any]] = []
        self._shedder_listeners: list[Callable[[], Any]] = []
        POLICIES.join(self)

    @property
    def retries(self) -> int:
        return self.actions["retry"]

    @retries.setter
    def retries(self, value: int) -> None:
        self.actions["retry"] = value

    @property
    def hedges(self) -> int:
        return self.actions["hedge"]

    @hedges.setter
    def hedges(self, value: int) -> None:
        self.actions["hedge"] = value

    @property
    def degraded(self) -> int:
        """Calls answered by a fallback because they were refused."""
        return self.actions["fallback"]

    @degraded.setter
    def degraded(self, value: int) -> None:
        self.actions["fallback"] = value

    @classmethod
    def from_file(cls, path: str | Path, overrides: dict[str, Any] | None = None, **kwargs: Any) -> Policy:
        """The policy of a TOML file, with ``overrides`` from code merged over it (same shape:
        ``{"server": {"inventory.reserve": {"limit": {"rate": 100}}}}``)."""
        return cls(_config.load(path, overrides), **kwargs)

    # -- a new config, live -------------------------------------------------------------------
    def check(self, config: PolicyConfig) -> None:
        """Raise :class:`~meshkit.policy.PolicyError` if this policy cannot run ``config`` (the
        file's own checks ran when it was parsed; this adds what depends on the process)."""
        if self._redis is None:
            _config.check_runnable(config)

    def apply(self, config: PolicyConfig, revision: int | None = None) -> list[str]:
        """Run ``config`` from now on, without a restart, and return the methods (and sections)
        whose rules changed. The state of every rule that did not change is kept (a bucket's
        tokens, a breaker's state, the shedder's learnt limit); a changed rule starts afresh at
        its method's next call. Calls in flight finish under the rule they started with.
        Switches change only where the config changes them, so one flipped live with
        ``meshkit switch`` stays until a revision says otherwise. A config that cannot run here
        (a shared limit without Redis, a Redis URL that does not parse) raises PolicyError and
        changes nothing."""
        self.check(config)
        old = self.config
        redis_moved = config.redis != old.redis and self._redis is None
        link = self._redis_link
        if config.shared_limits() and (link is None or redis_moved):
            link = self._link(config.redis)  # made first: a URL that does not parse changes nothing
        old_link = self._redis_link if redis_moved and self._redis_link is not link else None
        self.config, self.revision, self._redis_link = config, revision, link
        changed: list[str] = []
        shedder = self.shedder
        if config.shedding != old.shedding:
            changed.append("shedding")
            self._reshape_shedder()
        regrown = self.shedder is not shedder  # turned on or off: every plan holds the old one
        if regrown:
            self._tell(self._shedder_listeners, self.shedder)  # the server's refusal before decoding
        for plans in list(self._server_plans):
            for qualname in list(plans):
                if (
                    regrown
                    or (redis_moved and plans[qualname].shared)
                    or resolve(config.server, qualname, ServerRule) != resolve(old.server, qualname, ServerRule)
                ):
                    del plans[qualname]
                    changed.append(f"server:{qualname}")
        self._reshape_client(old, config, redis_moved, changed)
        for name in sorted(set(old.switches) | set(config.switches)):
            on = config.switches.get(name, False)
            if on != old.switches.get(name, False):
                self.switches.set(name, on)
                changed.append(f"switch:{name}")
        if any(a.instance_breaker != b.instance_breaker for a, b in _pairs(old.client, config.client)):
            changed.append("instance_breakers")

            def moved(service: str) -> bool:
                return self.instance_breaker_rule(service, old) != self.instance_breaker_rule(service, config)

            self._tell(self._breaker_listeners, moved)
        if old_link is not None:
            self._background(old_link.close())
        if self._users > 0 and link is not None and not link.started:
            self._background(self.connect_shared())
        return changed

    def _reshape_client(self, old: PolicyConfig, config: PolicyConfig, redis_moved: bool, changed: list[str]) -> None:
        """Drop the client stages whose rules changed; a changed retry rule rebuilds every method
        of its service, which share one retry budget."""
        stale: set[str] = set()
        budgets: set[str] = set()
        for stages in list(self._client_stages):
            for qualname in stages:
                before = resolve(old.client, qualname, ClientRule)
                after = resolve(config.client, qualname, ClientRule)
                shared = after.limit is not None and after.limit.shared
                if before != after or (redis_moved and shared):
                    stale.add(qualname)
                if before.retry != after.retry:
                    budgets.add(qualname.partition(".")[0])
        for stages in list(self._client_stages):
            stale.update(q for q in stages if q.partition(".")[0] in budgets)
        for service in budgets:
            self._budgets.pop(service, None)
        for qualname in sorted(stale):
            for stages in list(self._client_stages):
                stages.pop(qualname, None)
            for chains in list(self._client_chains):
                chains.pop(qualname, None)
            self.events.states.pop(qualname, None)  # a rule without a breaker shows none
            changed.append(f"client:{qualname}")

    def _reshape_shedder(self) -> None:
        s = self.config.shedding
        if not s.enabled:
            self.shedder = None  # the probe ends; plans made from now on have no shedder
        elif self.shedder is None:
            self.shedder = AdaptiveConcurrency(s.shedder_config(), self.clock())
            if self._users > 0 and self._probe is None:
                self._probe = self._background(self._measure())
        else:
            self.shedder.reconfigure(s.shedder_config())

    def _background(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # applied before any loop runs (a test, a script): start() does it
            work.close()
            return None
        task: asyncio.Task[Any] = loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def count_dry_run(self, rule: str, reason: str) -> None:
        """A dry-run rule would have refused a call here (it was let through)."""
        self.would_refuse[(rule, reason)] += 1

    def shadow(self, call: Any, rule: str, reason: str) -> None:
        """A client's dry-run rule would have refused ``call``: counted once per call, however
        many stages or attempts it passes after this (enforce would have stopped it here)."""
        key = id(call)
        if key not in self._shadowed:
            self._shadowed.add(key)
            self.count_dry_run(rule, reason)

    def shadowed(self, call: Any) -> bool:
        return id(call) in self._shadowed

    def unshadow(self, call: Any) -> None:
        self._shadowed.discard(id(call))

    # -- what servers and clients install --------------------------------------------------
    def server_middleware(self) -> Callable[[Any], Any]:
        return server_guard(self)

    def client_middleware(self) -> Callable[[Any], Any]:
        return client_guard(self)

    def instance_breaker_rule(self, service: str, config: PolicyConfig | None = None) -> Breaker | None:
        """The ``instance_breaker`` rule of ``service`` (``"*"``: a client with static targets,
        shared by every service: the ``"*"`` rule's, else the first rule that sets one)."""
        client = (config or self.config).client
        rule: Breaker | None = resolve(client, f"{service}.*", ClientRule).instance_breaker
        if rule is None and service == "*":
            rule = next((r.instance_breaker for r in client.values() if r.instance_breaker), None)
        return rule

    def on_instance_breakers(self, listener: Callable[[Callable[[str], bool]], None]) -> None:
        """Call ``listener(changed)`` after a config that changes instance breakers is applied;
        ``changed(service)`` says whether that service's rule changed (a client's channel then
        makes its breakers afresh). Held weakly when it is a bound method."""
        self._breaker_listeners.append(_weakly(listener))

    def on_shedder(self, listener: Callable[[AdaptiveConcurrency | None], None]) -> None:
        """Call ``listener(shedder)`` when a config turns shedding on or off (a server's
        dispatcher refuses with it before decoding). Held weakly when it is a bound method."""
        self._shedder_listeners.append(_weakly(listener))

    @staticmethod
    def _tell(listeners: list[Callable[[], Any]], *args: Any) -> None:
        for ref in list(listeners):
            listener = ref()
            if listener is None:
                listeners.remove(ref)
            else:
                listener(*args)

    def instance_breakers(self, service: str) -> Callable[[str, str], CircuitBreaker] | None:
        """A factory of per-instance breakers for ``service``, or None if its rule sets none."""
        rule = self.instance_breaker_rule(service)
        if rule is None or rule.kind != "classic":
            return None
        cfg = breaker_config(rule)

        def make(key: str, address: str) -> CircuitBreaker:
            name = f"{service}@{address}"
            self.events.states[name] = "closed"
            return CircuitBreaker(cfg, lambda old, new: self.events.emit(name, old.value, new.value))

        return make

    # -- shared state ------------------------------------------------------------------------
    def bucket(self, key: str, limit: Limit) -> Any:
        """A token bucket for ``limit``: local, or in Redis when the limit is ``shared``."""
        if not limit.shared:
            return TokenBucket(limit.per_second, limit.size, self.clock())
        from meshkit.resilience.redis_bucket import RedisTokenBucket

        if self._redis_link is None:
            self._redis_link = self._link()
        return RedisTokenBucket(self._redis_link, f"meshkit:limit:{key}", limit.per_second, limit.size)

    def _link(self, url: str | None = None) -> RedisLink:
        """The Redis link of the shared limits: over the ``redis`` client given, else a client of
        ``url`` (default: the policy's; importing redis-py here and only here)."""
        from meshkit.resilience.redis_bucket import RedisLink

        if self._redis is not None:
            return RedisLink(self._redis, clock=self.clock)
        url = url if url is not None else self.config.redis
        if url is None:
            raise _config.PolicyError("a limit is shared (shared = true) but the policy names no redis URL")
        try:
            return RedisLink.from_url(url, clock=self.clock)
        except ImportError as exc:
            raise _config.PolicyError("shared limits need redis-py: pip install 'meshkit[redis]'") from exc
        except ValueError as exc:  # redis-py's word for a URL it cannot use
            raise _config.PolicyError(f"redis: {url!r} is not a Redis URL: {exc}") from None

    def retry_budget(self, service: str, retry: Retry) -> RetryBudget:
        """One budget per target service (as gRPC keeps one per channel)."""
        budget = self._budgets.get(service)
        if budget is None:
            budget = self._budgets[service] = RetryBudget(retry.budget_tokens, retry.budget_ratio)
        return budget

    def shed_refusal(self, qualname: str) -> bytes:
        """The encoded ERROR body of a shed call, cached per method and retry-after (in ms)."""
        self.rejected["shed"] += 1
        retry_after = round(self.shed_retry_after(), 3)
        key = (qualname, retry_after)
        body = self._refusals.get(key)
        if body is None:
            if len(self._refusals) > 1024:
                self._refusals.clear()
            error = refusal(qualname, "shed", retry_after, "server overloaded")
            body = self._refusals[key] = encode_error(error.code, error.message, error.details)
        return body

    def shed_retry_after(self) -> float:
        shedder = self.shedder
        if shedder is None or shedder.baseline is None:
            return 0.01
        return min(1.0, max(0.001, shedder.baseline))

    # -- start and stop: the loop-lag probe, the Redis of the shared limits ------------------
    async def start(self) -> None:
        """Start the loop-lag (and CPU) probe that feeds the shedder, and connect to the Redis of
        the shared limits (within a second; if it does not answer, they decide locally at once);
        servers call this."""
        self._users += 1
        if self.shedder is not None and self._probe is None:
            self._probe = asyncio.get_running_loop().create_task(self._measure())
        await self.connect_shared()

    async def connect_shared(self) -> None:
        """Connect the Redis of the shared limits unless that was done: at start, or before a
        client's first shared call (a client has no start), once for every caller waiting, and
        for at most ``CONNECT_TIMEOUT``: a Redis that does not answer by then is down, and the
        shared limits are decided by the local bucket from now on."""
        link = self._redis_link
        if link is None or link.started:
            return
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._connect(link))
        await asyncio.shield(self._connecting)

    @staticmethod
    async def _connect(link: RedisLink) -> None:
        from meshkit.resilience.redis_bucket import CONNECT_TIMEOUT

        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await link.connect()
        except TimeoutError:
            link.failed(TimeoutError(f"no answer within {CONNECT_TIMEOUT:g}s"))

    async def stop(self) -> None:
        self._users = max(0, self._users - 1)
        if self._users > 0:
            return
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._redis_link is not None:
            await self._redis_link.close()

    async def _measure(self) -> None:
        """Feed the shedder loop lag and CPU use until there is no shedder (a live config can
        turn shedding off, or change the interval, while this runs)."""
        loop = asyncio.get_running_loop()
        cpu_then, wall_then = time.process_time(), loop.time()
        try:
            while self.shedder is not None:
                interval = self.config.shedding.lag_interval
                expected = loop.time() + interval
                await asyncio.sleep(interval)
                shedder = self.shedder
                if shedder is None:
                    break
                now = loop.time()
                shedder.on_lag(self.clock(), max(0.0, now - expected))
                cpu_now = time.process_time()
                if now > wall_then:
                    shedder.on_cpu(self.clock(), (cpu_now - cpu_then) / (now - wall_then))
                cpu_then, wall_then = cpu_now, now
        finally:
            if self._probe is asyncio.current_task():
                self._probe = None

    def snapshot(self) -> dict[str, Any]:
        """The state worth showing (``meshkit switch --show``, the demo, metrics)."""
        shedder = self.shedder
        return {
            "source": self.source,
            "revision": self.revision,
            "would_refuse": {f"{rule} {reason}": n for (rule, reason), n in sorted(self.would_refuse.items())},
            "switches": self.switches.snapshot(),
            "breakers": dict(self.events.states),
            "rejected": dict(self.rejected),
            "retries": self.retries,
            "hedges": self.hedges,
            "degraded": self.degraded,
            "shedder": None
            if shedder is None
            else {"limit": round(shedder.limit, 1), "in_flight": shedder.in_flight, "baseline": shedder.baseline},
        }
