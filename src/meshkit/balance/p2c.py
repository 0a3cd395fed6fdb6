"""Power of two choices with peak-EWMA latency and calls in flight (Finagle, Linkerd, Kratos).

Pick two nodes at random and take the one with the lower cost, ``latency_ewma * (in_flight + 1) /
weight``. Two random choices avoid the herding of "always the best" (every client would pile onto
the same node) while still steering away from slow or busy nodes almost as well as full knowledge.
The latency average decays with time (time constant ``tau``), so a node that was slow a minute ago
is not punished forever; a failed call counts as at least ``failure_penalty`` seconds, so a node
that fails fast does not look attractive. A new node starts at the mean of the others' measured
averages, not at zero, so it is not flooded the moment it appears (and not at a stale guess that
makes it look slower than a node that was simply measured first); its first real sample replaces
that guess, and a node not picked for ``probe_after`` seconds is picked once, so no node is starved
of samples.
"""

from __future__ import annotations

import math
import random as _random
import time
from collections.abc import Callable, Sequence
from typing import Generic

from meshkit.balance.base import Done, N, no_nodes, usable

DEFAULT_TAU = 10.0
DEFAULT_LATENCY = 0.010
DEFAULT_FAILURE_PENALTY = 0.250
#: A candidate not picked for this long is picked anyway: without it a node that never got a
#: sample keeps its starting estimate and may never be tried (Kratos does the same, "force pick").
DEFAULT_PROBE_AFTER = 1.0


class _Stat:
    __slots__ = ("ewma", "in_flight", "penalized", "picked_at", "sampled", "stamp")

    def __init__(self, ewma: float, stamp: float) -> None:
        self.ewma = ewma
        self.penalized = False  # the average holds a failure penalty, not a measured latency
        self.in_flight = 0
        self.stamp = stamp
        self.picked_at = stamp
        self.sampled = False


class P2CBalancer(Generic[N]):
    def __init__(
        self,
        rng: _random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        tau: float = DEFAULT_TAU,
        failure_penalty: float = DEFAULT_FAILURE_PENALTY,
        probe_after: float = DEFAULT_PROBE_AFTER,
    ) -> None:
        self._probe_after = probe_after
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self._rng = rng or _random.Random()
        self._clock = clock
        self._tau = tau
        self._penalty = failure_penalty
        self._nodes: list[N] = []
        self.stats: dict[str, _Stat] = {}

    def update(self, nodes: Sequence[N]) -> None:
        self._nodes = usable(nodes)
        start = self._typical_latency()
        now = self._clock()
        self.stats = {n.key: self.stats.get(n.key) or _Stat(start, now) for n in self._nodes}

    def _typical_latency(self) -> float:
        """The mean of the measured averages (a failure penalty is not a measurement); while
        there is none, of the starting guesses; with no node at all, the default."""
        stats = self.stats.values()
        measured = [s.ewma for s in stats if s.sampled and not s.penalized]
        known = measured or [s.ewma for s in stats if not s.sampled]
        return sum(known) / len(known) if known else DEFAULT_LATENCY

    def cost(self, node: N) -> float:
        stat = self.stats[node.key]
        return stat.ewma * (stat.in_flight + 1) / node.weight

    def pick(self, key: str | None = None) -> tuple[N, Done]:
        nodes = self._nodes
        if not nodes:
            raise no_nodes()
        if len(nodes) == 1:
            chosen = nodes[0]
        else:
            i = self._rng.randrange(len(nodes))
            j = self._rng.randrange(len(nodes) - 1)
            if j >= i:
                j += 1
            a, b = nodes[i], nodes[j]
            chosen = a if self.cost(a) <= self.cost(b) else b
            other = b if chosen is a else a
            now = self._clock()
            if now - self.stats[other.key].picked_at > self._probe_after:
                chosen = other
        stat = self.stats[chosen.key]
        stat.in_flight += 1
        stat.picked_at = self._clock() if len(nodes) > 1 else stat.picked_at
        return chosen, self._done(stat)

    def _done(self, stat: _Stat) -> Done:
        def done(latency: float, ok: bool) -> None:
            if stat.in_flight > 0:
                stat.in_flight -= 1
            if not ok:
                latency = max(latency, self._penalty)
            now = self._clock()
            if ok and stat.penalized and latency < stat.ewma:
                # The penalty was a guess, and each success is evidence against it: halve it per
                # success instead of letting it decay with tau (a node that recovered would get
                # only its probes for about a minute otherwise; measured in the demo).
                stat.ewma = max(latency, stat.ewma / 2)
                stat.penalized = stat.ewma > latency * 2
                stat.stamp = now
                return
            stat.penalized = not ok
            w = math.exp(-max(0.0, now - stat.stamp) / self._tau)
            stat.stamp = now
            if not stat.sampled:
                stat.sampled = True  # the first real sample replaces the starting estimate
                stat.ewma = latency
                if ok:
                    # The nodes still unsampled started at a guess: make it what is now known,
                    # or under sequential calls a fast first node would make every unsampled one
                    # look costlier and none would be tried before probe_after.
                    typical = self._typical_latency()
                    for other in self.stats.values():
                        if not other.sampled:
                            other.ewma = typical
                return
            # Peak-sensitive: a latency above the average replaces it at once; below, it decays in.
            stat.ewma = latency if latency > stat.ewma else stat.ewma * w + latency * (1 - w)

        return done
