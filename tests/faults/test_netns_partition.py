"""A real partition: an instance in its own network namespace, cut off by taking its veth link
down (packets vanish; nothing is refused or reset), then healed. Where the runner cannot create
namespaces (not root), a local run goes through the FaultProxy's partition instead; with CI=true
(CI runs as root) the namespace path is required and its absence fails the test: never skipped."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from meshkit import Server
from meshkit.testing import FaultProxy, NetnsLink, service_process
from meshkit.testing.netns import available
from tests.faults.conftest import ROOT, Reliability
from tests.faults.test_partitions import check_partition, partition_one_instance
from tests.helpers import CHILD_PYTHONPATH, in_ci
from tests.rpc.services import Greeter

CUT = 2.0


@asynccontextmanager
async def _cut_off_instance() -> AsyncIterator[tuple[str, Any, str]]:
    """(address of an instance that can be cut off, an object with cut()/heal(), how)."""
    if in_ci() and not available():
        pytest.fail(
            "CI=true but network namespaces are not available here (they need root and iproute2's `ip`): "
            "the real partition must run in CI, not the proxy fallback"
        )
    if available():
        with NetnsLink(f"mkf{os.getpid()}") as link:
            env = {"PYTHONPATH": CHILD_PYTHONPATH}
            with service_process(
                "tests.rpc.services:Greeter",
                args=["--host", link.inside],
                env=env,
                cwd=str(ROOT),
                prefix=link.exec_args([]),
            ) as srv:
                yield srv.address, link, "network namespace, veth link down"
        return
    async with Server([Greeter()], middleware=[]) as b, FaultProxy(b.address) as proxy:

        class Cutter:
            cut = proxy.partition
            heal = proxy.heal

        yield proxy.address, Cutter(), "FaultProxy partition (no network namespaces here)"


async def test_an_instance_cut_off_at_the_network_fails_over_and_heals(reliability: Reliability) -> None:
    async with Server([Greeter()], middleware=[]) as a, _cut_off_instance() as (far, cutter, how):
        run = await partition_one_instance(a.address, far, cutter.cut, cutter.heal, CUT)
    during = run.during()
    reliability.record(
        "real partition (network namespace)" if "namespace" in how else "real partition (proxy fallback)",
        f"1 of 2 instances cut off for {CUT:g} s: {how}; 8 callers, 1 s deadlines",
        "no call past its deadline; calls fail over; full service after heal",
        f"longest call {run.longest * 1000:.0f} ms; served during the cut {during.count('OK')} of {len(during)}; "
        f"the instance serves again {run.back:.2f} s after heal; the event loop's worst lateness "
        f"{run.lag * 1000:.0f} ms",
    )
    check_partition(run)
