"""Endpoints: warm-up ramp of newcomers, and that the first snapshot is not ramped."""

from __future__ import annotations

import random

from meshkit.rpc.endpoints import Endpoints, PeerNode
from meshkit.transport.pool import Peer


def make_peer(address: str) -> Peer:
    async def never(on_state_change):  # type: ignore[no-untyped-def]
        raise AssertionError("not connected in this test")

    return Peer(address, never)


def test_ramp_is_linear_and_ends_at_full_weight() -> None:
    node = PeerNode("k", 100, make_peer("h:1"), None)
    node.joined_at = 10.0
    weights = []
    for t in (10.0, 12.5, 15.0, 17.5, 19.99, 20.0, 30.0):
        node.ramp(t, warmup=10.0)
        weights.append(node.weight)
    assert weights == [1, 25, 50, 75, 100, 100, 100]
    assert node.joined_at is None  # warm: no more ramping


async def test_first_snapshot_is_not_ramped_but_newcomers_are() -> None:
    eps = Endpoints("svc", "weighted_round_robin", make_peer, random.Random(0), warmup=10.0)
    eps.set_instances([("a", "h:1", 100, None), ("b", "h:2", 100, None)])
    assert [n.weight for n in eps.nodes] == [100, 100]
    eps.set_instances([("a", "h:1", 100, None), ("b", "h:2", 100, None), ("c", "h:3", 100, None)])
    weights = {n.key: n.weight for n in eps.nodes}
    assert weights["a"] == weights["b"] == 100 and weights["c"] <= 2
    picks = [eps.pick(None, None)[0].address for _ in range(201)]
    assert picks.count("h:3") <= 2  # the newcomer gets a trickle, not a third
    await eps.close()
