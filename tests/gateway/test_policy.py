"""The gateway's calls go through a policy: per-instance breakers by default, or a policy file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from meshkit import RpcError, Server, StatusCode, rpc
from meshkit.gateway import GatewayApp, GatewayServer, parse
from tests.gateway.helpers import http_client, orders_config
from tests.gateway.services import Order, Orders


class Broken(Orders, name="orders"):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    @rpc
    async def get(self, order_id: int) -> Order:
        self.calls += 1
        raise RpcError(StatusCode.INTERNAL, "this instance is broken")


async def test_a_failing_instance_leaves_the_rotation() -> None:
    """Balancing and the instance breakers keep a broken instance's share of requests tiny."""
    broken = Broken()
    async with Server([Orders()]) as good, Server([broken]) as bad:
        config = parse(orders_config(f"{good.address},{bad.address}"))
        async with GatewayServer(GatewayApp(config)) as gw, http_client(gw) as http:
            statuses: list[int] = []
            for _ in range(20):  # 10 at a time: with nothing in flight, p2c may never try the second instance
                answers = await asyncio.gather(*(http.get("/orders/1") for _ in range(10)))
                statuses += [a.status_code for a in answers]
    print(f"broken instance: {broken.calls} of 200 requests")
    assert 1 <= broken.calls <= 30, broken.calls  # tried, then (nearly) left alone
    assert statuses.count(500) == broken.calls and statuses.count(200) == 200 - broken.calls


def test_a_policy_file_is_read_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text('[client."orders.*".retry]\nmax_attempts = 2\n')
    config = parse(orders_config("127.0.0.1:1", gateway='policy = "policy.toml"'))
    app = GatewayApp(config, base=tmp_path)
    assert app.policy().config.client["orders.*"].retry.max_attempts == 2  # type: ignore[union-attr]
    (tmp_path / "policy.toml").write_text('[client."orders.*".retry]\nmax_attempts = "two"\n')
    with pytest.raises(ValueError, match=r"gateway\.policy"):
        app.policy()
