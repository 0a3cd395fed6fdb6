from __future__ import annotations

import collections
import random

from meshkit.balance.p2c import DEFAULT_LATENCY, P2CBalancer
from meshkit.testing import FakeClock
from tests.balance.nodes import N, nodes


def test_slow_node_gets_less_traffic() -> None:
    clock = FakeClock()
    b: P2CBalancer[N] = P2CBalancer(random.Random(2), clock)
    b.update(nodes(1, 1, 1))
    latency = {"a": 0.001, "b": 0.001, "c": 0.050}
    c: collections.Counter[str] = collections.Counter()
    for _ in range(3_000):
        node, done = b.pick()
        c[node.key] += 1
        clock.now += 0.001
        done(latency[node.key], True)
    assert c["c"] < 0.1 * 3_000, c


def test_in_flight_steers_away_from_busy_nodes() -> None:
    b: P2CBalancer[N] = P2CBalancer(random.Random(4), FakeClock())
    b.update(nodes(1, 1))
    held = [b.pick() for _ in range(10)]  # nothing finishes: in-flight must balance them
    c = collections.Counter(node.key for node, _ in held)
    assert abs(c["a"] - c["b"]) <= 1


def test_failures_count_as_slow() -> None:
    clock = FakeClock()
    b: P2CBalancer[N] = P2CBalancer(random.Random(6), clock, failure_penalty=0.25)
    b.update(nodes(1, 1))
    first, hold = b.pick()  # held open: the next pick goes to the other node
    second, done = b.pick()
    assert {first.key, second.key} == {"a", "b"}
    clock.now += 0.001
    done(0.0001, False)  # it failed fast: that must not make it look fast
    hold(0.002, True)
    assert b.stats[second.key].ewma >= 0.25
    after = collections.Counter(b.pick()[0].key for _ in range(20))
    assert after[first.key] >= 19  # traffic stays on the node that works


def test_a_recovered_node_sheds_its_failure_penalty_within_a_few_successes() -> None:
    clock = FakeClock()
    b: P2CBalancer[N] = P2CBalancer(random.Random(0), clock, tau=10.0, failure_penalty=0.25)
    b.update([N("a")])
    for _ in range(3):
        b.pick()[1](0.001, False)
    assert b.stats["a"].ewma == 0.25
    costs = []
    for _ in range(8):
        clock.now += 1.0  # one probe a second, as a penalized node gets
        b.pick()[1](0.001, True)
        costs.append(b.stats["a"].ewma)
    assert costs[:3] == [0.125, 0.0625, 0.03125]
    assert costs[-1] < 0.002  # about its measured latency after 8 s, not after about a minute
    b.pick()[1](0.001, False)
    assert b.stats["a"].ewma == 0.25  # and a new failure is penalized again at once


def test_latency_memory_decays_with_time() -> None:
    clock = FakeClock()
    b: P2CBalancer[N] = P2CBalancer(random.Random(0), clock, tau=1.0)
    b.update([N("a")])
    _, done = b.pick()
    done(1.0, True)  # one very slow call: the peak is taken at once
    assert b.stats["a"].ewma == 1.0
    clock.now += 5.0  # five time constants later a fast call mostly replaces it
    _, done = b.pick()
    done(0.001, True)
    assert b.stats["a"].ewma < 0.01


def test_new_node_starts_at_the_mean_not_at_zero() -> None:
    clock = FakeClock()
    b: P2CBalancer[N] = P2CBalancer(random.Random(0), clock)
    b.update(nodes(1, 1))
    for key in "ab":
        b.stats[key].ewma = 0.020
    b.update(nodes(1, 1, 1))
    assert b.stats["c"].ewma == 0.020
    fresh: P2CBalancer[N] = P2CBalancer(random.Random(0), clock)
    fresh.update(nodes(1))
    assert fresh.stats["a"].ewma == DEFAULT_LATENCY


def test_weight_scales_cost() -> None:
    b: P2CBalancer[N] = P2CBalancer(random.Random(9), FakeClock())
    b.update([N("a", 1), N("b", 4)])
    c = collections.Counter(b.pick()[0].key for _ in range(50))  # nothing finishes
    assert c["b"] > 2 * c["a"]


def test_a_node_not_picked_for_a_while_is_probed() -> None:
    clock = FakeClock()
    b: P2CBalancer[N] = P2CBalancer(random.Random(1), clock, probe_after=1.0)
    b.update(nodes(1, 1))
    b.stats["a"].ewma, b.stats["a"].sampled = 0.001, True  # a looks much better than unsampled b
    picks = []
    for _ in range(300):
        node, done = b.pick()
        picks.append(node.key)
        clock.now += 0.01
        done(0.001 if node.key == "a" else 0.002, True)
    assert 1 <= picks.count("b") <= 10  # b is tried about once a second, not starved, not flooded


def test_sequential_calls_try_every_idle_node_without_waiting_for_a_probe() -> None:
    # Strictly one call at a time, every node equally fast: the first node measured must not make
    # the others (still at their starting guess) look costlier until probe_after passes.
    clock = FakeClock()
    b: P2CBalancer[N] = P2CBalancer(random.Random(3), clock, probe_after=1.0)
    b.update(nodes(1, 1, 1))
    c: collections.Counter[str] = collections.Counter()
    for _ in range(60):  # 60 calls in 60 ms: no probe is due
        node, done = b.pick()
        c[node.key] += 1
        clock.now += 0.001
        done(0.0002, True)
    assert set(c) == {"a", "b", "c"} and min(c.values()) >= 5, c


def test_a_node_joining_later_starts_at_the_measured_mean() -> None:
    clock = FakeClock()
    b: P2CBalancer[N] = P2CBalancer(random.Random(0), clock)
    b.update(nodes(1, 1))
    _node, done = b.pick()
    done(0.002, True)  # one measured node; the other unsampled
    b.update(nodes(1, 1, 1))
    assert b.stats["c"].ewma == 0.002
