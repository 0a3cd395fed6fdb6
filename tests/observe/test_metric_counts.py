"""RPC and policy metrics count what happened: a call the server ends at its own deadline is counted
as DEADLINE_EXCEEDED, and the policy counters never go down (a Policy that is collected keeps its
counts in the registry)."""

from __future__ import annotations

import asyncio
import gc

from prometheus_client import CollectorRegistry

from meshkit import Server, Service, rpc
from meshkit.observe import RpcMetrics
from meshkit.protocol.frames import FrameType, encode_frame
from meshkit.protocol.metadata import encode_metadata
from meshkit.serde import msgpack_encode


class Sleepy(Service, name="sleepy"):
    @rpc
    async def nap(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def test_server_counts_its_own_deadline_expiry_as_deadline_exceeded() -> None:
    registry = CollectorRegistry()
    metrics = RpcMetrics(registry)
    labels = {"service": "sleepy", "method": "nap"}
    async with Server([Sleepy()], middleware=[metrics.middleware("server")]) as server:
        md = encode_metadata({"service": "sleepy", "method": "nap", "deadline": 50})
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            writer.write(encode_frame(FrameType.REQUEST, 1, msgpack_encode({"seconds": 5.0}), md))
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(4096), 5)
            assert b"ran past its deadline" in answer  # the caller is told DEADLINE_EXCEEDED
            for _ in range(200):
                if registry.get_sample_value("meshkit_rpc_server_in_flight", labels) == 0:
                    break
                await asyncio.sleep(0.01)
        finally:
            writer.close()
    assert registry.get_sample_value("meshkit_rpc_server_requests_total", {**labels, "code": "DEADLINE_EXCEEDED"}) == 1


def test_policy_counters_never_decrease() -> None:
    from meshkit.policy import Policy, PolicyConfig, Switches

    registry = CollectorRegistry()
    RpcMetrics(registry)
    policy = Policy(PolicyConfig(), switches=Switches())
    policy.rejected["limit"] += 5
    policy.retries += 3
    before = registry.get_sample_value("meshkit_policy_rejections_total", {"reason": "limit"})
    retries_before = registry.get_sample_value("meshkit_policy_actions_total", {"action": "retry"})
    del policy
    gc.collect()
    after = registry.get_sample_value("meshkit_policy_rejections_total", {"reason": "limit"}) or 0.0
    retries_after = registry.get_sample_value("meshkit_policy_actions_total", {"action": "retry"}) or 0.0
    assert after >= before and retries_after >= retries_before  # type: ignore[operator]
