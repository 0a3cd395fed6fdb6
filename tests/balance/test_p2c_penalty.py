"""Review of "p2c: unsampled nodes take the mean of the measured averages when the first one is
measured".

A failed call is recorded as at least ``failure_penalty`` (0.25 s) and marks the node
``sampled``. ``_typical_latency`` counts that penalty as a "measured average", so when a node's
first sample is a failure, every still-unsampled node is raised to the penalty too: the failing
node and the healthy unsampled ones now cost the same, and the next burst of calls is split
between them (5 of 10 here) instead of avoiding the node that just failed (0 of 10 before the
commit, when the others kept their 10 ms guess). The same happens to nodes added by update(),
which now start at the penalty, and a later first-sample failure pulls the guess of the remaining
unsampled nodes up (towards the cost the commit meant to stop them from having).

Fix: leave penalized averages out of ``_typical_latency`` (use only ``sampled and not penalized``
ones; fall back to the previous guess / DEFAULT_LATENCY when none is left).
"""

from __future__ import annotations

import collections
import random

from meshkit.balance.p2c import P2CBalancer
from meshkit.testing import FakeClock
from tests.balance.nodes import N, nodes


def test_a_node_whose_first_call_failed_is_avoided_by_the_next_burst() -> None:
    for seed in range(4):
        clock = FakeClock()
        b: P2CBalancer[N] = P2CBalancer(random.Random(seed), clock, failure_penalty=0.25)
        b.update(nodes(1, 1))
        failed, done = b.pick()
        clock.now += 0.001
        done(0.0005, False)  # refused at once: the node is down
        held = [b.pick() for _ in range(10)]  # a burst of concurrent calls, none finished yet
        to_failed = collections.Counter(node.key for node, _ in held)[failed.key]
        assert to_failed <= 1, f"seed {seed}: {to_failed} of 10 calls went to the node that just failed"


def test_a_node_added_after_a_failure_does_not_start_at_the_penalty() -> None:
    clock = FakeClock()
    b: P2CBalancer[N] = P2CBalancer(random.Random(0), clock, failure_penalty=0.25)
    b.update(nodes(1))
    _node, done = b.pick()
    done(0.0005, False)  # the only node is down
    b.update(nodes(1, 1))  # a replacement appears
    assert b.stats["b"].ewma < 0.25, "the new node starts as costly as the node that is down"
