from __future__ import annotations

import collections

from hypothesis import given
from hypothesis import strategies as st

from meshkit.balance.smooth_wrr import SmoothWeightedRoundRobin
from tests.balance.nodes import N, nodes


def test_nginx_sequence() -> None:
    b: SmoothWeightedRoundRobin[N] = SmoothWeightedRoundRobin()
    b.update(nodes(5, 1, 1))
    assert [b.pick()[0].key for _ in range(7)] == ["a", "a", "b", "a", "c", "a", "a"]
    assert [b.pick()[0].key for _ in range(7)] == ["a", "a", "b", "a", "c", "a", "a"]


@given(st.lists(st.integers(1, 12), min_size=1, max_size=6))
def test_each_cycle_gives_each_node_exactly_its_weight(weights: list[int]) -> None:
    b: SmoothWeightedRoundRobin[N] = SmoothWeightedRoundRobin()
    b.update(nodes(*weights))
    cycle = sum(weights)
    for _ in range(3):
        c = collections.Counter(b.pick()[0].key for _ in range(cycle))
        assert c == {n.key: n.weight for n in nodes(*weights)}


@given(st.lists(st.integers(1, 12), min_size=2, max_size=6))
def test_picks_are_spread_not_bunched(weights: list[int]) -> None:
    b: SmoothWeightedRoundRobin[N] = SmoothWeightedRoundRobin()
    b.update(nodes(*weights))
    total = sum(weights)
    seq = [b.pick()[0].key for _ in range(total)]
    # The heaviest node never runs longer than its share allows before another gets a turn.
    heaviest = max(nodes(*weights), key=lambda n: n.weight)
    longest = (
        max(len(run) for run in "".join(seq).replace(heaviest.key, "X").split("X") if run) if len(set(seq)) > 1 else 0
    )
    assert longest <= total - heaviest.weight
