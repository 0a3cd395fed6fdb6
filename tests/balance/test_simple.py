from __future__ import annotations

import collections
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshkit import RpcError, StatusCode
from meshkit.balance import NAMES, make
from meshkit.balance.simple import PickFirstBalancer, RandomBalancer, RoundRobinBalancer, WeightedRandomBalancer
from tests.balance.nodes import N, nodes


def counts(balancer, picks: int) -> collections.Counter[str]:  # type: ignore[no-untyped-def]
    return collections.Counter(balancer.pick()[0].key for _ in range(picks))


def test_random_is_roughly_uniform() -> None:
    b: RandomBalancer[N] = RandomBalancer(random.Random(1))
    b.update(nodes(1, 1, 1, 1))
    c = counts(b, 40_000)
    assert all(9_000 < v < 11_000 for v in c.values()), c


def test_pick_first_always_picks_the_first_node_with_weight() -> None:
    b: PickFirstBalancer[N] = PickFirstBalancer()
    b.update(nodes(1, 5, 5))
    assert counts(b, 100) == {"a": 100}, "never spills to the others, whatever the load"
    b.update(nodes(0, 5, 5))  # a weight of 0 takes no traffic: the next in order does
    assert counts(b, 10) == {"b": 10}


def test_round_robin_cycles_exactly() -> None:
    b: RoundRobinBalancer[N] = RoundRobinBalancer(random.Random(3))
    b.update(nodes(1, 1, 1))
    seq = [b.pick()[0].key for _ in range(9)]
    assert sorted(seq[:3]) == ["a", "b", "c"]
    assert seq[:3] * 3 == seq


@given(st.lists(st.integers(0, 20), min_size=1, max_size=8).filter(lambda ws: sum(ws) > 0), st.integers(0, 2**32))
def test_weighted_random_respects_weights(weights: list[int], seed: int) -> None:
    b: WeightedRandomBalancer[N] = WeightedRandomBalancer(random.Random(seed))
    b.update(nodes(*weights))
    total = sum(weights)
    picks = 4_000
    c = counts(b, picks)
    for node in nodes(*weights):
        expected = picks * node.weight / total
        assert abs(c[node.key] - expected) <= 5 * (expected**0.5) + 5, (weights, c)
        if node.weight == 0:
            assert c[node.key] == 0


@pytest.mark.parametrize("name", NAMES)
def test_no_nodes_is_unavailable(name: str) -> None:
    b = make(name, rng=random.Random(0))
    b.update([])
    with pytest.raises(RpcError) as info:
        b.pick("k")
    assert info.value.code is StatusCode.UNAVAILABLE and info.value.not_processed
    b.update([N("a", 0)])  # weight 0 takes no traffic
    with pytest.raises(RpcError):
        b.pick("k")


@pytest.mark.parametrize("name", NAMES)
def test_negative_weight_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="negative weight"):
        make(name).update([N("a", -1)])


@pytest.mark.parametrize("name", NAMES)
def test_every_balancer_only_returns_current_nodes(name: str) -> None:
    b = make(name, rng=random.Random(5))
    b.update(nodes(1, 2, 3))
    b.update(nodes(1, 2))  # c is gone
    for i in range(300):
        node, done = b.pick(f"k{i}")
        assert node.key in {"a", "b"}
        done(0.001, True)


def test_unknown_name() -> None:
    with pytest.raises(ValueError, match="p2c"):
        make("fastest")
