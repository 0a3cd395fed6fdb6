"""Consistent hashing with virtual nodes (ketama) and bounded loads.

Each node owns ``vnodes`` points on a 32-bit ring (more for heavier nodes); a key goes to the first
point clockwise of its hash. Adding one node to n moves only about 1/(n+1) of the keys, which is
what caches behind the service need. Plain consistent hashing lets a hot key overload its node, so
each node also has a capacity of ``ceil(load_factor * (calls in flight + 1) / nodes)``: a node at
capacity is skipped for the next one on the ring (Mirrokni et al., "Consistent Hashing with Bounded
Loads", the scheme Google Cloud and HAProxy use). No node ever holds more than that.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import random as _random
from collections.abc import Sequence
from typing import Generic

from meshkit.balance.base import Done, N, no_nodes, usable

DEFAULT_VNODES = 160
DEFAULT_LOAD_FACTOR = 1.25


def hash_key(key: str) -> int:
    """The 32-bit ring position of ``key`` (first 4 bytes of its MD5, as ketama does)."""
    return int.from_bytes(hashlib.md5(key.encode(), usedforsecurity=False).digest()[:4], "little")


def _points(key: str, count: int) -> list[int]:
    """``count`` ring points for a node: each MD5 digest yields four 32-bit points (ketama)."""
    out: list[int] = []
    i = 0
    while len(out) < count:
        digest = hashlib.md5(f"{key}-{i}".encode(), usedforsecurity=False).digest()
        out.extend(int.from_bytes(digest[j : j + 4], "little") for j in range(0, 16, 4))
        i += 1
    return out[:count]


class ConsistentHashBalancer(Generic[N]):
    def __init__(
        self,
        vnodes: int = DEFAULT_VNODES,
        load_factor: float | None = DEFAULT_LOAD_FACTOR,
        rng: _random.Random | None = None,
    ) -> None:
        if vnodes < 1:
            raise ValueError(f"vnodes must be at least 1, got {vnodes}")
        if load_factor is not None and load_factor < 1.0:
            raise ValueError(f"load_factor must be >= 1 (or None for no bound), got {load_factor}")
        self._vnodes = vnodes
        self._factor = load_factor
        self._rng = rng or _random.Random()
        self._nodes: list[N] = []
        self._hashes: list[int] = []
        self._owners: list[int] = []
        self.loads: dict[str, int] = {}  # calls in flight per node key
        self._in_flight = 0

    def update(self, nodes: Sequence[N]) -> None:
        self._nodes = usable(nodes)
        if not self._nodes:
            self._hashes, self._owners = [], []
            return
        mean = sum(n.weight for n in self._nodes) / len(self._nodes)
        ring: list[tuple[int, int]] = []
        for index, node in enumerate(self._nodes):
            count = max(1, round(self._vnodes * node.weight / mean))
            ring.extend((point, index) for point in _points(node.key, count))
        ring.sort()
        self._hashes = [h for h, _ in ring]
        self._owners = [i for _, i in ring]
        self.loads = {n.key: self.loads.get(n.key, 0) for n in self._nodes}
        self._in_flight = sum(self.loads.values())

    def capacity(self) -> int:
        """The most calls one node may hold now (only with a load factor)."""
        assert self._factor is not None
        return math.ceil(self._factor * (self._in_flight + 1) / len(self._nodes))

    def owner(self, key: str) -> N:
        """The node ``key`` maps to when no node is at capacity."""
        if not self._nodes:
            raise no_nodes()
        pos = bisect.bisect_left(self._hashes, hash_key(key)) % len(self._hashes)
        return self._nodes[self._owners[pos]]

    def pick(self, key: str | None = None) -> tuple[N, Done]:
        if not self._nodes:
            raise no_nodes()
        point = hash_key(key) if key is not None else self._rng.getrandbits(32)
        hashes, owners = self._hashes, self._owners
        pos = bisect.bisect_left(hashes, point) % len(hashes)
        if self._factor is None:
            return self._nodes[owners[pos]], _track(self, self._nodes[owners[pos]].key)
        cap = self.capacity()
        loads = self.loads
        for step in range(len(hashes)):
            node = self._nodes[owners[(pos + step) % len(hashes)]]
            if loads[node.key] < cap:
                return node, _track(self, node.key)
        raise AssertionError("bounded load: no node under capacity")  # cannot happen: cap >= mean


def _track(balancer: ConsistentHashBalancer[N], key: str) -> Done:
    balancer.loads[key] = balancer.loads.get(key, 0) + 1
    balancer._in_flight += 1

    def done(latency: float, ok: bool) -> None:
        if key in balancer.loads and balancer.loads[key] > 0:
            balancer.loads[key] -= 1
            balancer._in_flight -= 1

    return done
