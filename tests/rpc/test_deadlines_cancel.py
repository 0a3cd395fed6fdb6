"""Deadlines on both sides, propagation into nested calls, and cancellation."""

from __future__ import annotations

import asyncio

import pytest

from meshkit import Client, RpcError, Server, StatusCode
from tests.rpc.services import Greeter, Probe, Relay


async def test_deadline_exceeded_on_caller_cancels_handler(client: Client, probe: Probe) -> None:
    with pytest.raises(RpcError) as info:
        await client.proxy(Greeter).with_options(timeout=0.05).wait()
    assert info.value.code is StatusCode.DEADLINE_EXCEEDED
    assert probe.started.is_set()
    # The server cancels the handler at the deadline (and on the caller's CANCEL): wait for it, bounded.
    await asyncio.wait_for(probe.cancelled.wait(), timeout=5)


async def test_server_side_deadline_cancels_handler_without_caller_cancel(probe: Probe) -> None:
    async with Server([Greeter(probe)], middleware=[]) as srv, Client(target=srv.address, middleware=[]) as c:
        # Caller's own budget is long; the server sees only the propagated one via metadata.
        call = asyncio.create_task(c.proxy(Greeter).with_options(timeout=0.1).wait())
        await asyncio.wait_for(probe.cancelled.wait(), timeout=5)
        with pytest.raises(RpcError) as info:
            await call
        assert info.value.code is StatusCode.DEADLINE_EXCEEDED


async def test_deadline_travels_as_remaining_budget(client: Client) -> None:
    remaining = await client.proxy(Greeter).with_options(timeout=2.0).remaining()
    assert remaining is not None and 1.0 < remaining <= 2.0
    assert await client.proxy(Greeter).with_options(timeout=None).remaining() is None


async def test_nested_call_inherits_deadline(probe: Probe) -> None:
    async with Server([Greeter(probe)], middleware=[]) as greeter_srv:
        async with Server([Relay(greeter_srv.address)], middleware=[]) as relay_srv:
            async with Client(target=relay_srv.address) as c:
                outer, inner = await c.proxy(Relay).with_options(timeout=0.5).inner_remaining()
    assert outer is not None and inner is not None
    # The inner client asked for 30 s, but the handler had at most 0.5 s left: it inherits that.
    assert 0 < inner <= outer <= 0.5


async def test_caller_cancellation_cancels_handler(client: Client, probe: Probe) -> None:
    task = asyncio.create_task(client.proxy(Greeter).wait())
    await asyncio.wait_for(probe.started.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(probe.cancelled.wait(), timeout=5)


async def test_expired_deadline_is_not_sent(client: Client) -> None:
    g = client.proxy(Greeter)

    async def inside() -> None:
        await g.with_options(timeout=0.001).sleep(0.05)

    with pytest.raises(RpcError) as info:
        await inside()
    assert info.value.code is StatusCode.DEADLINE_EXCEEDED


async def test_calls_after_timeouts_still_work(client: Client) -> None:
    g = client.proxy(Greeter)
    results = await asyncio.gather(*(g.with_options(timeout=0.02).sleep(1) for _ in range(20)), return_exceptions=True)
    assert all(isinstance(r, RpcError) and r.code is StatusCode.DEADLINE_EXCEEDED for r in results)
    assert await g.hello("after") == "hello after"


async def test_mixed_timeouts_expire_in_deadline_order(client: Client) -> None:
    g = client.proxy(Greeter)
    order: list[float] = []

    async def call(timeout: float) -> None:
        with pytest.raises(RpcError) as info:
            await g.with_options(timeout=timeout).sleep(5)
        assert info.value.code is StatusCode.DEADLINE_EXCEEDED
        order.append(timeout)

    # Deadlines that arrive out of order (a shorter timeout after a longer one) must not wait
    # behind the longer one.
    await asyncio.gather(call(0.9), call(0.3), call(0.6))
    assert order == [0.3, 0.6, 0.9]


async def test_finished_calls_do_not_pile_up_in_the_deadline_queue(client: Client) -> None:
    g = client.proxy(Greeter)
    for _ in range(10):
        await asyncio.gather(*(g.hello("x") for _ in range(500)))
    conn = client._first_peer().connections[0]
    # 5,000 calls with a 10 s timeout finished; the queue holds at most a compaction's worth.
    assert len(conn._deadlines) <= 2 * 500 + 1024 + 500


async def test_a_connect_timeout_inside_the_pool_is_unavailable_not_the_calls_deadline() -> None:
    from meshkit.rpc.channel import _acquire
    from meshkit.rpc.service import method_specs

    class TimingOutPeer:
        address = "127.0.0.1:1"

        async def acquire(self) -> None:
            raise TimeoutError  # the connect's own timeout, long before the call's budget

    spec = next(iter(method_specs(Greeter).values()))
    deadline = asyncio.get_running_loop().time() + 60
    with pytest.raises(RpcError) as caught:
        await _acquire(TimingOutPeer(), deadline, spec)  # type: ignore[arg-type]
    assert caught.value.code is StatusCode.UNAVAILABLE and caught.value.not_processed
    assert "timed out" in str(caught.value)


async def test_an_expired_deadline_is_counted_and_logged_as_deadline_exceeded_on_the_server(
    probe: Probe, caplog: pytest.LogCaptureFixture
) -> None:
    """The caller does not race the server with a CANCEL when its deadline passes: the server,
    holding the same deadline, stops the handler itself and its access log and metrics say
    DEADLINE_EXCEEDED, not CANCELLED."""
    import logging

    from prometheus_client import CollectorRegistry

    from meshkit.observe import RpcMetrics
    from meshkit.rpc.access_log import access_log

    metrics = RpcMetrics(CollectorRegistry())
    chain = [metrics.middleware("server"), access_log("meshkit.access")]
    with caplog.at_level(logging.INFO, logger="meshkit.access"):
        async with Server([Greeter(probe)], middleware=chain) as srv, Client(target=srv.address, middleware=[]) as c:
            for _ in range(5):
                probe.cancelled.clear()
                with pytest.raises(RpcError) as info:
                    await c.proxy(Greeter).with_options(timeout=0.05).wait()
                assert info.value.code is StatusCode.DEADLINE_EXCEEDED
                await asyncio.wait_for(probe.cancelled.wait(), timeout=5)
            stats = metrics.stats["server"]["greeter.wait"]
            loop = asyncio.get_running_loop()
            give_up = loop.time() + 5
            while stats.in_flight and loop.time() < give_up:
                await asyncio.sleep(0.01)
    assert stats.codes == {"DEADLINE_EXCEEDED": 5}
    lines = [r.getMessage() for r in caplog.records if r.name == "meshkit.access"]
    assert len(lines) == 5 and all("status=DEADLINE_EXCEEDED" in line for line in lines), lines
    assert not any("request_id" in line for line in lines)  # no request id given: none logged
