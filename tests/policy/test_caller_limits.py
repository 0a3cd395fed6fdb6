"""A per-caller limit is checked before the method's limit: a caller refused by its own limit
takes no token from the method's bucket, so it cannot drain the method for the other callers."""

from __future__ import annotations

import pytest

from meshkit import Client, RpcError, Server
from meshkit.policy import Limit, Policy, PolicyConfig, ServerRule, Switches
from meshkit.testing import FakeClock
from tests.policy.policies import NO_SHED
from tests.policy.services import Stock


async def test_a_caller_over_its_own_limit_does_not_drain_the_method_limit_of_others() -> None:
    rule = ServerRule(limit=Limit(rate=0.001, burst=3), caller_limit=Limit(rate=0.001, burst=1))
    p = Policy(PolicyConfig(shedding=NO_SHED, server={"stock.peek": rule}), clock=FakeClock(), switches=Switches())
    async with Server([Stock()], policy=p, middleware=[]) as server:
        async with (
            Client(target=server.address, caller="noisy") as noisy,
            Client(target=server.address, caller="quiet") as quiet,
        ):
            assert await noisy.proxy(Stock).peek("1") == "1"
            for _ in range(2):
                with pytest.raises(RpcError, match="rate limit of caller 'noisy'"):
                    await noisy.proxy(Stock).peek("x")  # refused by its own caller limit...
            # ...and those refusals took nothing from the method's bucket (burst 3): the quiet caller gets in
            assert await quiet.proxy(Stock).peek("2") == "2"
