"""The instances a client can send one service's calls to: peers, a balancer, and discovery.

Static targets (``Client(target=…)``) make one fixed set shared by every service. With a registry
(``Client(registry=…)``) each service gets its own set, filled by ``resolve`` and kept current by
``watch``; if the registry becomes unreachable the last known set stays ("unreachable is not
empty"), and the watch is retried on the backoff schedule.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence

from meshkit.balance import NOOP_DONE, Done, make
from meshkit.balance.base import Balancer
from meshkit.balance.outlier import OutlierDetector
from meshkit.discovery.amnesia import AmnesiaGuard
from meshkit.discovery.events import WATCH_EVENTS
from meshkit.discovery.instance import Instance
from meshkit.discovery.registry import Discovery
from meshkit.errors import RpcError, StatusCode
from meshkit.resilience.breaker import CircuitBreaker
from meshkit.transport.backoff import Backoff
from meshkit.transport.pool import Peer

log = logging.getLogger("meshkit.discovery")

#: How long a peer that left the registry keeps its connections for calls still in flight.
RETIRE_GRACE = 30.0


#: How long held instances stay after a watch reconnects when the registry does not say its TTL.
DEFAULT_REGISTRY_TTL = 10.0

#: New instances (those that join after the first snapshot) get their weight on a linear ramp over
#: this many seconds, so a cold process (empty caches, unjitted paths, cold pools) is not handed
#: its full share at once.
DEFAULT_WARMUP = 10.0


class PeerNode:
    """A balancer node backed by a peer (Node protocol: ``key``, ``weight``)."""

    __slots__ = ("full_weight", "instance", "joined_at", "key", "peer", "weight")

    def __init__(self, key: str, weight: int, peer: Peer, instance: Instance | None) -> None:
        self.key = key
        self.weight = weight
        self.full_weight = weight
        self.joined_at: float | None = None  # set while warming up
        self.peer = peer
        self.instance = instance

    def ramp(self, now: float, warmup: float) -> bool:
        """Update the weight on the warm-up ramp; False once fully warm."""
        if self.joined_at is None:
            return False
        progress = (now - self.joined_at) / warmup
        if progress >= 1:
            self.weight, self.joined_at = self.full_weight, None
            return False
        self.weight = max(1, round(self.full_weight * progress))
        return True


class Endpoints:
    def __init__(
        self,
        name: str,
        balancer: str,
        make_peer: Callable[[str], Peer],
        rng: random.Random,
        warmup: float = DEFAULT_WARMUP,
        breakers: Callable[[str, str], CircuitBreaker] | None = None,
    ) -> None:
        self.name = name
        self.warmup = warmup
        self._ramp_timer: asyncio.TimerHandle | None = None
        self._make_peer = make_peer
        self.balancer: Balancer[PeerNode] = make(balancer, rng=rng)
        self._name = balancer
        self._rng = rng
        self._extra_balancers: dict[str, Balancer[PeerNode]] = {}
        self.nodes: list[PeerNode] = []
        self.peers: dict[str, Peer] = {}
        #: With exactly one node there is nothing to choose: calls skip the balancer.
        self.only: Peer | None = None
        #: Per-instance circuit breakers (a policy's ``instance_breaker``), by node key. They take
        #: the place of passive outlier ejection: two mechanisms removing the same instance on
        #: different clocks would fight (a failed half-open probe would eject it for 30 s).
        self._make_breaker = breakers
        self.outliers = OutlierDetector() if breakers is None else OutlierDetector(consecutive=2**31)
        self.breakers: dict[str, CircuitBreaker] = {}
        self.ready = asyncio.Event()
        self.resolved = False  # ready.is_set(), as a plain attribute for the hot path
        self.watch_task: asyncio.Task[None] | None = None

    def use_breakers(self, make: Callable[[str, str], CircuitBreaker] | None) -> None:
        """A new ``instance_breaker`` rule (a live policy changed it): breakers made afresh from
        it for every instance (or none, and outlier ejection back in their place)."""
        self._make_breaker = make
        self.outliers = OutlierDetector() if make is None else OutlierDetector(consecutive=2**31)
        self.outliers.update([n.key for n in self.nodes])
        self.breakers = {n.key: make(n.key, n.peer.address) for n in self.nodes} if make is not None else {}

    def set_instances(self, entries: Sequence[tuple[str, str, int, Instance | None]]) -> None:
        """Replace the set with (key, address, weight, instance) entries; reuse peers by address.

        A snapshot equal to the current set changes nothing (balancer state, such as a round-robin
        position or latency averages, survives a watch that repeats itself)."""
        if self.resolved and [(k, a, w) for k, a, w, _ in entries] == [
            (n.key, n.peer.address, n.full_weight) for n in self.nodes
        ]:
            return
        known = {n.key: n for n in self.nodes}
        warming = False
        now = asyncio.get_running_loop().time() if self.resolved and self.warmup > 0 else 0.0
        wanted: dict[str, Peer] = {}
        nodes = []
        for key, address, weight, instance in entries:
            peer = wanted.get(address) or self.peers.get(address) or self._make_peer(address)
            wanted[address] = peer
            node = PeerNode(key, weight, peer, instance)
            old = known.get(key)
            if old is not None:
                node.joined_at = old.joined_at
            elif self.resolved and self.warmup > 0:
                node.joined_at = now  # a newcomer: start on the ramp
            if node.joined_at is not None:
                warming |= node.ramp(now or asyncio.get_running_loop().time(), self.warmup)
            nodes.append(node)
        for address, peer in self.peers.items():
            if address not in wanted:
                asyncio.get_running_loop().create_task(_retire(peer))  # never at construction
        self.peers = wanted
        self.nodes = nodes
        self.balancer.update(nodes)
        for extra in self._extra_balancers.values():
            extra.update(nodes)
        self.outliers.update([n.key for n in nodes])
        if self._make_breaker is not None:
            make = self._make_breaker
            self.breakers = {n.key: self.breakers.get(n.key) or make(n.key, n.peer.address) for n in nodes}
        self.only = nodes[0].peer if len(nodes) == 1 else None
        self.resolved = True
        self.ready.set()
        if warming and self._ramp_timer is None:
            self._ramp_timer = asyncio.get_running_loop().call_later(self.warmup / 10, self._ramp)

    def _ramp(self) -> None:
        """Raise the newcomers' weights one step; the balancer sees the new weights."""
        self._ramp_timer = None
        now = asyncio.get_running_loop().time()
        warming = False
        for node in self.nodes:
            warming |= node.ramp(now, self.warmup)
        self.balancer.update(self.nodes)
        for extra in self._extra_balancers.values():
            extra.update(self.nodes)
        if warming:
            self._ramp_timer = asyncio.get_running_loop().call_later(self.warmup / 10, self._ramp)

    def _balancer_named(self, name: str) -> Balancer[PeerNode]:
        """A per-call balancer (``with_options(balancer=…)``), built once per name and kept current."""
        balancer = self._extra_balancers.get(name)
        if balancer is None:
            balancer = self._extra_balancers[name] = make(name, rng=self._rng)
            balancer.update(self.nodes)
        return balancer

    def pick(
        self, hash_key: str | None, avoid: Peer | None, name: str | None = None, stream: bool = False
    ) -> tuple[Peer, Done]:
        """A peer for one call and the callback for its outcome. ``stream=True``: a stream's
        opening says nothing about the instance's health, so its outcome goes to the balancer
        only, and a half-open breaker lends it no probe slot (open breakers are still avoided)."""
        only = self.only
        if only is not None:
            return only, NOOP_DONE
        now = asyncio.get_running_loop().time()
        outliers = self.outliers
        chosen = self.balancer if name is None or name == self._name else self._balancer_named(name)
        node, done = chosen.pick(hash_key)
        breakers = self.breakers

        def admits(key: str) -> bool:
            if not breakers:
                return True
            breaker = breakers[key]
            return breaker.would_allow(now) if stream else breaker.allow(now)

        if len(self.nodes) > 1 and (
            node.peer is avoid or not node.peer.available or outliers.is_ejected(node.key, now) or not admits(node.key)
        ):
            # Ejected, in reconnect backoff, its breaker open, or the one that just refused: ask
            # the balancer again, and if it insists (p2c with two nodes always returns the
            # cheaper), take the first acceptable node in order. (The breaker is asked last: in
            # half-open, asking takes one of its probe slots.)
            def acceptable(n: PeerNode) -> bool:
                return (
                    n.peer is not avoid and n.peer.available and not outliers.is_ejected(n.key, now) and admits(n.key)
                )

            for _ in range(len(self.nodes)):
                done(0.0, True)
                node, done = chosen.pick(None)
                if acceptable(node):
                    break
            else:
                fallback = next((n for n in self.nodes if acceptable(n)), None)
                if fallback is not None:
                    done(0.0, True)
                    node, done = fallback, NOOP_DONE
        if stream:
            return node.peer, done
        return node.peer, _reporting(done, outliers, node.key, breakers.get(node.key))

    async def close(self) -> None:
        if self._ramp_timer is not None:
            self._ramp_timer.cancel()
        if self.watch_task is not None:
            self.watch_task.cancel()
        await asyncio.gather(*(p.close() for p in self.peers.values()))


def _reporting(done: Done, outliers: OutlierDetector, key: str, breaker: CircuitBreaker | None) -> Done:
    """The balancer's done, plus the outcome for outlier ejection and the instance's breaker."""

    def report(latency: float, ok: bool) -> None:
        done(latency, ok)
        now = asyncio.get_running_loop().time()
        if outliers.record(key, ok, now):
            log.warning("ejected instance %s after consecutive failures", key)
        if breaker is not None:
            (breaker.on_success if ok else breaker.on_failure)(now, latency)

    return report


async def _retire(peer: Peer) -> None:
    """Close a peer that left, once its calls in flight are done (or the grace period ends)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RETIRE_GRACE
    while peer.in_flight and loop.time() < deadline:  # noqa: ASYNC110 - a bounded, rare poll
        await asyncio.sleep(0.1)
    await peer.close()


def instance_entries(instances: Sequence[Instance], zone: str = "") -> list[tuple[str, str, int, Instance | None]]:
    """Healthy instances with weight; with a ``zone``, only that zone's while it has any (zone
    preference, failing over to every zone when the local one is empty)."""
    healthy = [i for i in instances if i.healthy and i.weight > 0]
    if zone:
        local = [i for i in healthy if i.zone == zone]
        if local:
            healthy = local
    return [(i.id, i.address, i.weight, i) for i in healthy]


async def watch_service(
    registry: Discovery, endpoints: Endpoints, backoff: Backoff, zone: str = "", grace: float | None = None
) -> None:
    """Keep ``endpoints`` equal to the registry's view; survive registry outages.

    After the watch reconnects, instances known before are kept for ``grace`` seconds (default:
    ``amnesia_grace``) unless the registry shows them again: see ``discovery.amnesia``."""
    loop = asyncio.get_running_loop()
    guard = AmnesiaGuard(amnesia_grace(registry) if grace is None else grace)
    release: asyncio.TimerHandle | None = None
    last: list[Instance] = []

    def apply(snapshot: list[Instance]) -> None:
        nonlocal release
        endpoints.set_instances(instance_entries(guard.view(snapshot, loop.time()), zone))
        if release is not None:
            release.cancel()
            release = None
        deadline = guard.deadline
        if deadline is not None:  # let the held ones go on time even if the registry stays quiet
            release = loop.call_at(deadline, let_go, deadline)

    def let_go(due: float) -> None:
        guard.let_go(due)
        apply(last)

    reconnecting = False
    try:
        while True:
            watcher = registry.watch(endpoints.name)
            try:
                async for snapshot in watcher:
                    backoff.reset()
                    WATCH_EVENTS[endpoints.name, "snapshot"] += 1
                    last = snapshot
                    if not reconnecting:
                        # An empty snapshot is the registry saying "none": apply it. An outage
                        # raises instead, and then the last set stays.
                        apply(snapshot)
                        continue
                    reconnecting = False
                    guard.reconnected([n.instance for n in endpoints.nodes if n.instance is not None], loop.time())
                    apply(snapshot)
                    if guard.held:
                        WATCH_EVENTS[endpoints.name, "held"] += guard.held
                        log.warning(
                            "the registry shows %d instances of %s after the watch reconnected; holding %d more it "
                            "has not shown again for up to %.1fs",
                            len(snapshot),
                            endpoints.name,
                            guard.held,
                            guard.grace,
                        )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any registry failure: keep the last set, retry
                WATCH_EVENTS[endpoints.name, "error"] += 1
                if release is not None:  # unreachable is not empty: nothing is let go while it is down
                    release.cancel()
                    release = None
                delay = backoff.next_delay()
                log.warning(
                    "watch of %s failed (%s); keeping %d known instances, retrying in %.1fs",
                    endpoints.name,
                    exc,
                    len(endpoints.nodes),
                    delay,
                )
                await asyncio.sleep(delay)
            finally:
                await watcher.close()
            reconnecting = True
            endpoints.ready.set()
    finally:
        if release is not None:
            release.cancel()


def amnesia_grace(registry: Discovery) -> float:
    """How long to hold known instances after a watch reconnects: the lease TTL for a registry
    that can come back empty (``forgets_on_restart``, meshkit's built-in one); 0 for one that
    keeps its state through restarts (etcd, ZooKeeper: CP, their answer after a reconnect is
    the truth, and an instance missing from it really left)."""
    if not registry.forgets_on_restart:
        return 0.0
    ttl = registry.ttl
    return float(ttl) if ttl is not None and ttl > 0 else DEFAULT_REGISTRY_TTL


def no_instances(service: str) -> RpcError:
    return RpcError(StatusCode.UNAVAILABLE, f"no instance of {service!r} is registered", not_processed=True)
