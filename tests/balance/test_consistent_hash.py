from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from meshkit.balance.consistent_hash import ConsistentHashBalancer
from tests.balance.nodes import N, nodes

KEYS = [f"user-{i}" for i in range(10_000)]


def ring(ns: list[N], **kw: object) -> ConsistentHashBalancer[N]:
    b: ConsistentHashBalancer[N] = ConsistentHashBalancer(load_factor=None, **kw)  # type: ignore[arg-type]
    b.update(ns)
    return b


def test_same_key_same_node() -> None:
    b = ring(nodes(1, 1, 1, 1))
    assert all(b.pick(k)[0] == b.pick(k)[0] for k in KEYS[:500])


def test_adding_one_node_moves_about_one_in_n_plus_one_keys() -> None:
    before = ring(nodes(*[1] * 10))
    after = ring(nodes(*[1] * 11))
    moved = [k for k in KEYS if before.owner(k) != after.owner(k)]
    assert 0.5 / 11 < len(moved) / len(KEYS) < 1.5 / 11
    assert all(after.owner(k).key == "k" for k in moved)  # keys only move to the new node


def test_keys_spread_evenly_and_by_weight() -> None:
    b = ring(nodes(1, 1, 2))
    share = {n: 0 for n in "abc"}
    for k in KEYS:
        share[b.owner(k).key] += 1
    assert 0.18 < share["a"] / len(KEYS) < 0.32
    assert 0.40 < share["c"] / len(KEYS) < 0.60


@settings(max_examples=60)
@given(
    st.integers(2, 8),
    st.lists(st.tuples(st.booleans(), st.integers(0, 30)), max_size=300),
    st.sampled_from([1.0, 1.25, 2.0]),
)
def test_bounded_load_never_exceeds_its_capacity(n: int, ops: list[tuple[bool, int]], factor: float) -> None:
    b: ConsistentHashBalancer[N] = ConsistentHashBalancer(load_factor=factor, rng=random.Random(0))
    b.update(nodes(*[1] * n))
    open_calls = []
    for is_pick, key in ops:
        if is_pick or not open_calls:
            cap = math.ceil(factor * (sum(b.loads.values()) + 1) / n)
            node, done = b.pick(f"hot-{key % 3}")  # few keys: hot spots on purpose
            assert b.loads[node.key] <= cap
            open_calls.append(done)
        else:
            open_calls.pop(key % len(open_calls))(0.001, True)
        assert max(b.loads.values()) <= math.ceil(factor * (sum(b.loads.values())) / n) + 1


def test_hot_key_spills_to_the_next_node() -> None:
    b: ConsistentHashBalancer[N] = ConsistentHashBalancer(load_factor=1.25)
    b.update(nodes(1, 1, 1, 1))
    picked = [b.pick("one-hot-key") for _ in range(40)]
    used = {node.key for node, _ in picked}
    assert len(used) > 1  # the owner filled up, the rest went clockwise
    for _, done in picked:
        done(0.001, True)
    assert sum(b.loads.values()) == 0
