"""Prometheus metrics of RPC calls, connection pools, breakers, limiters, the shedder and
registry watches.

Per call (middleware, both sides): a request counter by service, method and status code, a
duration histogram (100 µs to 10 s) and an in-flight gauge, kept as plain numbers per method (a
dict lookup, a bisect and four additions a call) and turned into metrics when Prometheus
scrapes. Everything else (breakers, policies, pools, registry watches) is read at scrape time
from the clients and policies the collector was told of: it subscribes to ``rpc.events`` and
``policy.events`` when it is made (and is told then of those already there), so a client is
reported from its opening to its ``close()``, a policy until it is collected, and the collector
holds neither alive. Nothing of this runs per call.
"""

from __future__ import annotations

import asyncio
import collections
import time
import weakref
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from meshkit.errors import DEADLINE_CANCEL_MESSAGE, RpcError
from meshkit.policy.events import POLICIES, PolicyMade
from meshkit.rpc.events import CLIENTS, ClientClosed, ClientEvent, ClientOpened

if TYPE_CHECKING:
    from meshkit.policy.runtime import Policy
    from meshkit.rpc.client import Client

#: What the server cancels a handler with when its deadline passes (rpc/server.py).
DEADLINE_MESSAGE = DEADLINE_CANCEL_MESSAGE
#: 100 µs to 10 s: an RPC on loopback takes ~100 µs, a slow one seconds.
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BREAKER_VALUES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}

Handler = Callable[[Any], Awaitable[Any]]
Middleware = Callable[[Handler], Handler]


class _Stats:
    """One method's numbers on one side: plain ints and floats, updated on the event loop (no
    locks: prometheus_client's metric objects cost a lock per operation, about half the price
    of a call's metrics); turned into metric families when Prometheus scrapes."""

    __slots__ = ("buckets", "codes", "in_flight", "method", "service", "total")

    def __init__(self, service: str, method: str) -> None:
        self.service = service
        self.method = method
        self.in_flight = 0
        self.codes: dict[str, int] = {}
        self.buckets = [0] * (len(BUCKETS) + 1)  # the last one is +Inf
        self.total = 0.0


class RpcMetrics:
    """The RPC metrics of one process, registered in ``registry`` (default: prometheus_client's)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else REGISTRY
        self.stats: dict[str, dict[str, _Stats]] = {"server": {}, "client": {}}
        self.registry.register(_RpcCollector(self.stats))
        self.registry.register(_StateCollector())

    def middleware(self, side: str) -> Middleware:
        """The metrics middleware of ``side`` ("server" or "client"); put it early in the chain."""
        if side not in self.stats:
            raise ValueError(f"side is 'server' or 'client', not {side!r}")
        stats = self.stats[side]
        clock = time.perf_counter
        bounds = BUCKETS

        def wrap(next_handler: Handler) -> Handler:
            async def handler(call: Any) -> Any:
                spec = call.spec
                st = stats.get(spec.qualname)
                if st is None:
                    st = stats[spec.qualname] = _Stats(spec.service, spec.name)
                st.in_flight += 1
                start = clock()
                code = "OK"
                try:
                    return await next_handler(call)
                except RpcError as exc:
                    code = exc.code.name
                    raise
                except asyncio.CancelledError as exc:
                    # The server cancels a handler whose deadline passed, and answers DEADLINE_EXCEEDED.
                    code = "DEADLINE_EXCEEDED" if exc.args == (DEADLINE_MESSAGE,) else "CANCELLED"
                    raise
                except BaseException:
                    code = "UNKNOWN"
                    raise
                finally:
                    elapsed = clock() - start
                    st.in_flight -= 1
                    st.buckets[bisect_left(bounds, elapsed)] += 1
                    st.total += elapsed
                    st.codes[code] = st.codes.get(code, 0) + 1

            return handler

        return wrap


class _RpcCollector(Collector):
    def __init__(self, stats: dict[str, dict[str, _Stats]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Any]:
        for side, by_method in self._stats.items():
            verb = "served" if side == "server" else "made"
            requests = CounterMetricFamily(
                f"meshkit_rpc_{side}_requests",
                f"RPC calls {verb}, by status code",
                labels=["service", "method", "code"],
            )
            duration = HistogramMetricFamily(
                f"meshkit_rpc_{side}_duration_seconds",
                f"Time to {'serve' if side == 'server' else 'complete'} an RPC call",
                labels=["service", "method"],
            )
            in_flight = GaugeMetricFamily(
                f"meshkit_rpc_{side}_in_flight",
                f"RPC calls {'being served' if side == 'server' else 'awaiting an answer'}",
                labels=["service", "method"],
            )
            for st in list(by_method.values()):
                labels = [st.service, st.method]
                for code, n in sorted(st.codes.items()):
                    requests.add_metric([*labels, code], n)
                cumulative, running = [], 0
                for bound, n in zip([*map(str, BUCKETS), "+Inf"], st.buckets, strict=True):
                    running += n
                    cumulative.append((bound, running))
                duration.add_metric(labels, cumulative, st.total)
                in_flight.add_metric(labels, st.in_flight)
            yield from (requests, duration, in_flight)


class _StateCollector(Collector):
    """What is read at scrape time: breakers, policy counters, the shedder, connection pools,
    registry watch events.

    The clients and policies come from the rosters' events: held weakly, keyed by id (a dict
    copy is one C-level operation, safe while a scrape runs in another thread). A policy's
    counters are held strongly and folded into ``retired`` once it is collected, so the totals
    never go down."""

    def __init__(self) -> None:
        self._clients: dict[int, weakref.ref[Client]] = {}
        self._policies: dict[int, tuple[weakref.ref[Policy], collections.Counter[str], collections.Counter[str]]] = {}
        self._retired: dict[str, float] = {}
        CLIENTS.subscribe(self._on_client)
        POLICIES.subscribe(self._on_policy)

    def _on_client(self, event: ClientEvent) -> None:
        key = id(event.client)
        if isinstance(event, ClientOpened):
            clients = self._clients

            def collected(ref: weakref.ref[Client]) -> None:
                if clients.get(key) is ref:
                    del clients[key]

            clients[key] = weakref.ref(event.client, collected)
        elif isinstance(event, ClientClosed):
            self._clients.pop(key, None)

    def _on_policy(self, event: PolicyMade) -> None:
        key = id(event.policy)
        policies = self._policies
        rejected, actions = event.policy.rejected, event.policy.actions
        would = event.policy.would_refuse

        def collected(ref: weakref.ref[Policy]) -> None:
            if key in policies and policies[key][0] is ref:
                del policies[key]
                self._retire(rejected, actions, would)

        policies[key] = (weakref.ref(event.policy, collected), rejected, actions)

    def _retire(
        self,
        rejected: collections.Counter[str],
        actions: collections.Counter[str],
        would: collections.Counter[tuple[str, str]] | None = None,
    ) -> None:
        retired = dict(self._retired)
        for prefix, counts in (("rejected:", rejected), ("action:", actions)):
            for name, n in dict(counts).items():
                retired[prefix + name] = retired.get(prefix + name, 0.0) + n
        for (rule, reason), count in dict(would if would is not None else collections.Counter()).items():
            slot = f"would:{rule}\x00{reason}"
            retired[slot] = retired.get(slot, 0.0) + count
        self._retired = retired  # replaced, not changed in place: a scrape reads one or the other

    def _live_policies(self) -> list[Policy]:
        return [p for ref, _, _ in list(self._policies.values()) if (p := ref()) is not None]

    def _live_clients(self) -> list[Client]:
        return [c for ref in list(self._clients.values()) if (c := ref()) is not None]

    def collect(self) -> Iterator[Any]:
        from meshkit.discovery.events import WATCH_EVENTS

        breakers = GaugeMetricFamily(
            "meshkit_breaker_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open", labels=["name"]
        )
        rejections = CounterMetricFamily(
            "meshkit_policy_rejections", "Calls refused by a policy, by reason", labels=["reason"]
        )
        actions = CounterMetricFamily("meshkit_policy_actions", "Retries, hedges and fallbacks", labels=["action"])
        would_refuse = CounterMetricFamily(
            "meshkit_policy_would_refuse",
            "Calls a dry-run rule would have refused (and let through), by rule and reason",
            labels=["rule", "reason"],
        )
        revision = GaugeMetricFamily(
            "meshkit_policy_revision",
            "The configuration store revision each live policy runs, by source (gray: 1 if a gray revision)",
            labels=["source", "gray"],
        )
        config_rejected = CounterMetricFamily(
            "meshkit_policy_config_rejections",
            "Revisions of a live policy rejected as invalid (the last good one kept running), by source",
            labels=["source"],
        )
        limit = GaugeMetricFamily("meshkit_shedder_limit", "The adaptive concurrency limit")
        shed_in_flight = GaugeMetricFamily("meshkit_shedder_in_flight", "Calls in flight under the shedder")
        # Retired policies' counts stay in the totals: counters never go down.
        retired = self._retired
        totals: dict[str, float] = {k[9:]: v for k, v in retired.items() if k.startswith("rejected:")}
        acts = {"retry": 0.0, "hedge": 0.0, "fallback": 0.0}
        for key, value in retired.items():
            if key.startswith("action:") and key[7:] in acts:
                acts[key[7:]] += value
        limits: list[float] = []
        flights: list[float] = []
        states: dict[str, str] = {}
        would: dict[tuple[str, str], float] = {}
        for key, value in retired.items():
            if key.startswith("would:"):
                rule, _, reason = key[6:].partition("\x00")
                would[(rule, reason)] = would.get((rule, reason), 0.0) + value
        for policy in self._live_policies():
            for pair, n in dict(policy.would_refuse).items():
                would[pair] = would.get(pair, 0.0) + n
            if policy.source is not None:
                if policy.revision is not None:
                    gray = "1" if getattr(policy, "gray", False) else "0"
                    revision.add_metric([policy.source, gray], float(policy.revision))
                config_rejected.add_metric([policy.source], float(policy.actions["config_rejected"]))
            states.update(dict(policy.events.states))  # dict(): a C-level copy, safe from another thread
            for reason, n in dict(policy.rejected).items():
                totals[reason] = totals.get(reason, 0.0) + n
            for action, n in dict(policy.actions).items():
                if action in acts:
                    acts[action] += n
            if policy.shedder is not None:
                limits.append(policy.shedder.limit)
                flights.append(policy.shedder.in_flight)
        for name, state in sorted(states.items()):
            breakers.add_metric([name], BREAKER_VALUES.get(state, -1.0))
        for reason, total in sorted(totals.items()):
            rejections.add_metric([reason], total)
        for action, count in acts.items():
            actions.add_metric([action], count)
        if limits:
            limit.add_metric([], sum(limits))
            shed_in_flight.add_metric([], sum(flights))
        pools = GaugeMetricFamily(
            "meshkit_client_connections", "Open connections of the client pools, by target service", labels=["service"]
        )
        for name, count in _pool_sizes(self._live_clients()).items():
            pools.add_metric([name], count)
        watch = CounterMetricFamily(
            "meshkit_registry_events",
            "Registry watch events seen by clients (snapshot, error, held)",
            labels=["service", "event"],
        )
        for (service, event), seen in sorted(WATCH_EVENTS.items()):
            watch.add_metric([service, event], seen)
        for (rule, reason), total in sorted(would.items()):
            would_refuse.add_metric([rule, reason], total)
        yield from (breakers, rejections, actions, would_refuse, revision, config_rejected, limit, shed_in_flight)
        yield from (pools, watch)


def _pool_sizes(clients: list[Client]) -> dict[str, float]:
    sizes: dict[str, float] = {}
    for client in clients:
        for name, endpoints in list(client.endpoints().items()):
            peers = list(endpoints.peers.values())
            sizes[name] = sizes.get(name, 0.0) + sum(len(peer.connections) for peer in peers)
    return sizes


_default: RpcMetrics | None = None


def default_metrics() -> RpcMetrics:
    """The process's metrics on prometheus_client's default registry (made once)."""
    global _default
    if _default is None:
        _default = RpcMetrics()
    return _default
