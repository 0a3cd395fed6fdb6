"""Real sockets between separate processes: kills, stops, silent peers."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from meshkit import Client, KeepaliveConfig, RpcError, StatusCode
from tests.helpers import LoopLag
from tests.rpc.procs import server_process
from tests.rpc.services import Greeter, Item

pytestmark = pytest.mark.slow

SERVICE = "tests.rpc.services:Greeter"


async def test_thousand_concurrent_calls_across_processes() -> None:
    with server_process(SERVICE) as srv:
        async with Client(target=srv.address, middleware=[]) as c:
            g = c.proxy(Greeter)
            items = [Item(i, "x", []) for i in range(1000)]
            assert await asyncio.gather(*(g.echo(it) for it in items)) == items


async def test_kill_9_mid_call_fails_every_pending_caller_fast() -> None:
    keepalive = KeepaliveConfig(interval=0.5, timeout=0.5)
    with server_process(SERVICE) as srv:
        async with Client(target=srv.address, middleware=[], keepalive=keepalive, timeout=60) as c:
            g = c.proxy(Greeter)
            assert await g.hello("up") == "hello up"
            calls = [asyncio.create_task(g.sleep(30)) for _ in range(100)]
            # Frames are handled in order: once this answer is back, the server has all 100 calls.
            assert await g.hello("barrier") == "hello barrier"
            with LoopLag() as lag:
                started = time.monotonic()
                srv.signal(signal.SIGKILL)
                results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), timeout=10)
                elapsed = time.monotonic() - started
    assert all(isinstance(r, RpcError) and r.code is StatusCode.UNAVAILABLE for r in results)
    # Within the keepalive timeout (interval + timeout), not the 30 s the handlers would take; the
    # loop's own lateness delays every timer and read, so it is allowed for.
    assert elapsed - lag.worst < keepalive.interval + keepalive.timeout + 1.0, (elapsed, lag.worst)


async def test_stopped_peer_is_declared_dead_by_keepalive() -> None:
    keepalive = KeepaliveConfig(interval=0.3, timeout=0.3)
    with server_process(SERVICE) as srv:
        async with Client(target=srv.address, middleware=[], keepalive=keepalive, timeout=60) as c:
            g = c.proxy(Greeter)
            assert await g.hello("up") == "hello up"
            srv.signal(signal.SIGSTOP)  # the socket stays open; only keepalive can tell
            with LoopLag() as lag:
                started = time.monotonic()
                with pytest.raises(RpcError) as info:
                    await asyncio.wait_for(g.sleep(0.01), timeout=10)
                elapsed = time.monotonic() - started
            srv.signal(signal.SIGCONT)
    assert info.value.code is StatusCode.UNAVAILABLE
    assert elapsed - lag.worst < keepalive.interval + keepalive.timeout + 1.0, (elapsed, lag.worst)


async def test_sigterm_drains_calls_in_flight() -> None:
    with server_process(SERVICE, grace=10) as srv:
        async with Client(target=srv.address, middleware=[], timeout=30) as c:
            g = c.proxy(Greeter)
            assert await g.hello("up") == "hello up"
            calls = [asyncio.create_task(g.sleep(0.5)) for _ in range(200)]
            assert await g.hello("barrier") == "hello barrier"  # the server has all 200 calls
            srv.signal(signal.SIGTERM)
            results = await asyncio.gather(*calls, return_exceptions=True)
        assert results == ["slept"] * 200
        assert srv.wait(timeout=10) == 0


async def test_cli_call_prints_json_result() -> None:
    with server_process(SERVICE) as srv:
        proc = await asyncio.create_subprocess_exec(
            "python",
            "-m",
            "meshkit",
            "call",
            srv.address,
            "greeter.echo",
            '{"item": {"id": 42, "name": "alice", "tags": ["a", "b"]}}',
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, err
        assert b'"name": "alice"' in out
        proc = await asyncio.create_subprocess_exec(
            "python",
            "-m",
            "meshkit",
            "call",
            srv.address,
            "greeter.hello",
            '{"name": 3}',
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        assert proc.returncode == 1
        assert b"INVALID_ARGUMENT" in err and b"`name`" in err
