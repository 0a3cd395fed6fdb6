"""p2c after a failure: a failed call's penalty (``failure_penalty``) is not taken for a measured
latency, so still-unsampled nodes keep their guess. The node whose first call failed is avoided by
the next burst of calls, and a node added after the failure does not start as costly as the node
that is down.
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
