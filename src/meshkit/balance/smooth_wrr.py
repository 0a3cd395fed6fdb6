"""Smooth weighted round-robin, nginx's algorithm.

Every pick adds each node's weight to its running score, takes the highest score and subtracts the
total weight from it. Over a cycle of ``sum(weights)`` picks each node is chosen exactly ``weight``
times, and the heavy node's turns are spread out (a a b a c a a for 5/1/1) instead of bunched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic

from meshkit.balance.base import NOOP_DONE, Done, N, no_nodes, usable


class SmoothWeightedRoundRobin(Generic[N]):
    def __init__(self) -> None:
        self._nodes: list[N] = []
        self._weights: list[int] = []
        self._current: list[int] = []
        self._total = 0

    def update(self, nodes: Sequence[N]) -> None:
        # Keep the running scores of nodes that stay, so an update does not restart the cycle.
        previous = {n.key: c for n, c in zip(self._nodes, self._current, strict=True)}
        self._nodes = usable(nodes)
        self._weights = [n.weight for n in self._nodes]
        self._current = [previous.get(n.key, 0) for n in self._nodes]
        self._total = sum(self._weights)

    def pick(self, key: str | None = None) -> tuple[N, Done]:
        if not self._nodes:
            raise no_nodes()
        current = self._current
        best = 0
        for i, weight in enumerate(self._weights):
            current[i] += weight
            if current[i] > current[best]:
                best = i
        current[best] -= self._total
        return self._nodes[best], NOOP_DONE
