"""The stateless-ish balancers: pick-first, random, round-robin and weighted random."""

from __future__ import annotations

import bisect
import itertools
import random as _random
from collections.abc import Sequence
from typing import Generic

from meshkit.balance.base import NOOP_DONE, Done, N, no_nodes, usable


class PickFirstBalancer(Generic[N]):
    """The first node, always (gRPC's ``pick_first``), for a service whose addresses are one
    authority and its stand-ins: the built-in registry's registrations, locks and configuration
    are not replicated between registry servers, so spreading calls would split them. The channel
    takes the next node in order only while the first is unusable (in reconnect backoff, ejected,
    its breaker open)."""

    def __init__(self) -> None:
        self._nodes: list[N] = []

    def update(self, nodes: Sequence[N]) -> None:
        self._nodes = usable(nodes)

    def pick(self, key: str | None = None) -> tuple[N, Done]:
        if not self._nodes:
            raise no_nodes()
        return self._nodes[0], NOOP_DONE


class RandomBalancer(Generic[N]):
    """Uniform choice: no state, no coordination, good enough when instances are alike."""

    def __init__(self, rng: _random.Random | None = None) -> None:
        self._rng = rng or _random.Random()
        self._nodes: list[N] = []

    def update(self, nodes: Sequence[N]) -> None:
        self._nodes = usable(nodes)

    def pick(self, key: str | None = None) -> tuple[N, Done]:
        if not self._nodes:
            raise no_nodes()
        return self._rng.choice(self._nodes), NOOP_DONE


class RoundRobinBalancer(Generic[N]):
    """Each node in turn. Starts at a random offset so that many clients do not march in step."""

    def __init__(self, rng: _random.Random | None = None) -> None:
        self._rng = rng or _random.Random()
        self._nodes: list[N] = []
        self._counter = itertools.count()

    def update(self, nodes: Sequence[N]) -> None:
        self._nodes = usable(nodes)
        self._counter = itertools.count(self._rng.randrange(max(1, len(self._nodes))))

    def pick(self, key: str | None = None) -> tuple[N, Done]:
        nodes = self._nodes
        if not nodes:
            raise no_nodes()
        return nodes[next(self._counter) % len(nodes)], NOOP_DONE


class WeightedRandomBalancer(Generic[N]):
    """Choice in proportion to weight: a binary search over cumulative weights, O(log n) a pick."""

    def __init__(self, rng: _random.Random | None = None) -> None:
        self._rng = rng or _random.Random()
        self._nodes: list[N] = []
        self._cumulative: list[int] = []

    def update(self, nodes: Sequence[N]) -> None:
        self._nodes = usable(nodes)
        self._cumulative = list(itertools.accumulate(n.weight for n in self._nodes))

    def pick(self, key: str | None = None) -> tuple[N, Done]:
        if not self._nodes:
            raise no_nodes()
        point = self._rng.randrange(self._cumulative[-1])
        return self._nodes[bisect.bisect_right(self._cumulative, point)], NOOP_DONE
