"""Pure load balancers: each chooses a node and learns from the outcome (``pick`` → ``done``).

``make(name)`` builds one by the name ``Client(balancer=…)`` takes.
"""

from __future__ import annotations

import random as _random
import time
from collections.abc import Callable
from typing import Any

from meshkit.balance.base import NOOP_DONE, Balancer, Done, Node
from meshkit.balance.consistent_hash import ConsistentHashBalancer
from meshkit.balance.p2c import P2CBalancer
from meshkit.balance.simple import PickFirstBalancer, RandomBalancer, RoundRobinBalancer, WeightedRandomBalancer
from meshkit.balance.smooth_wrr import SmoothWeightedRoundRobin

NAMES = ("random", "round_robin", "weighted_random", "weighted_round_robin", "consistent_hash", "p2c", "pick_first")


def make(name: str, *, rng: _random.Random | None = None, clock: Callable[[], float] = time.monotonic) -> Balancer[Any]:
    """A balancer by name; the random source and clock are injectable for tests."""
    if name == "random":
        return RandomBalancer(rng)
    if name == "round_robin":
        return RoundRobinBalancer(rng)
    if name == "weighted_random":
        return WeightedRandomBalancer(rng)
    if name == "weighted_round_robin":
        return SmoothWeightedRoundRobin()
    if name == "consistent_hash":
        return ConsistentHashBalancer(rng=rng)
    if name == "p2c":
        return P2CBalancer(rng=rng, clock=clock)
    if name == "pick_first":
        return PickFirstBalancer()
    raise ValueError(f"unknown balancer {name!r}; choose one of: {', '.join(NAMES)}")


__all__ = [
    "NAMES",
    "NOOP_DONE",
    "Balancer",
    "ConsistentHashBalancer",
    "Done",
    "Node",
    "P2CBalancer",
    "PickFirstBalancer",
    "RandomBalancer",
    "RoundRobinBalancer",
    "SmoothWeightedRoundRobin",
    "WeightedRandomBalancer",
    "make",
]
