"""Regression tests for the bugs a review of transport/, rpc/, serde.py and cli.py found.

Each test failed against the code as reviewed (commit 5dc6578 and before) and passes since the fix.
"""

from __future__ import annotations

import asyncio
import contextvars
import gc
import socket
import tracemalloc
from collections.abc import AsyncIterator

import pytest

from meshkit import Client, RpcError, Server, Service, StatusCode, rpc
from meshkit.protocol.frames import FrameType, encode_frame
from meshkit.protocol.metadata import encode_metadata
from meshkit.serde import msgpack_encode
from meshkit.transport.backoff import Backoff, BackoffPolicy
from meshkit.transport.pool import Peer
from tests.rpc.services import Greeter, Probe

_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("review_var", default=None)


class Quirks(Service, name="quirks"):
    def __init__(self) -> None:
        self.stream_closed = asyncio.Event()

    @rpc
    async def with_timeout(self) -> str:
        async with asyncio.timeout(5):
            await asyncio.sleep(0)
        return "ok"

    @rpc
    async def with_taskgroup(self) -> int:
        async with asyncio.TaskGroup() as tg:
            t = tg.create_task(asyncio.sleep(0, result=7))
        return t.result()

    @rpc
    async def set_var(self, value: str) -> None:
        _var.set(value)  # a handler-local setting, as any Task-per-call server would isolate

    @rpc
    async def get_var(self) -> str | None:
        return _var.get()

    @rpc
    async def await_cancelled_future(self) -> str:
        # e.g. a shared single-flight future whose owner was cancelled: raises CancelledError
        # although nobody cancelled *this* call.
        fut = asyncio.get_running_loop().create_future()
        fut.cancel()
        await fut
        return "unreachable"

    @rpc
    async def add_kw(self, a: int, *, b: int = 2) -> int:
        return a + b

    @rpc
    async def hang(self) -> AsyncIterator[int]:
        await asyncio.Event().wait()
        yield 0

    @rpc
    async def ticks(self, n: int) -> AsyncIterator[int]:
        try:
            for i in range(n):
                yield i
        finally:
            self.stream_closed.set()


def _token_middleware(next_handler):  # type: ignore[no-untyped-def]
    # The standard set/reset pattern (OpenTelemetry's attach/detach works the same way).
    async def handler(call):  # type: ignore[no-untyped-def]
        token = _var.set(call.method)
        try:
            return await next_handler(call)
        finally:
            _var.reset(token)

    return handler


# -- eager handler execution (rpc/server.py _dispatch + rpc/eager.py) -----------------------------


async def test_asyncio_timeout_and_taskgroup_work_in_handlers() -> None:
    async with Server([Quirks()], middleware=[]) as srv, Client(target=srv.address, middleware=[]) as c:
        q = c.proxy(Quirks)
        assert await q.with_timeout() == "ok"
        assert await q.with_taskgroup() == 7


async def test_contextvar_token_reset_in_middleware_survives_suspension() -> None:
    async with Server([Greeter()], middleware=[_token_middleware]) as srv:
        async with Client(target=srv.address, middleware=[]) as c:
            assert await c.proxy(Greeter).sleep(0.01) == "slept"


async def test_contextvar_set_by_one_call_does_not_leak_into_the_next() -> None:
    async with Server([Quirks()], middleware=[]) as srv, Client(target=srv.address, middleware=[]) as c:
        q = c.proxy(Quirks)
        await q.set_var("alice")
        assert await q.get_var() is None


async def test_handler_raising_cancelled_error_gets_an_answer() -> None:
    async with Server([Quirks()], middleware=[]) as srv:
        async with Client(target=srv.address, middleware=[], timeout=None) as c:
            with pytest.raises(RpcError) as info:
                await asyncio.wait_for(c.proxy(Quirks).await_cancelled_future(), timeout=2)
            assert info.value.code in (StatusCode.CANCELLED, StatusCode.UNKNOWN, StatusCode.INTERNAL)


async def test_cancel_in_same_read_as_request_cancels_the_handler() -> None:
    probe = Probe()
    async with Server([Greeter(probe)], middleware=[]) as srv:
        md = encode_metadata({"service": "greeter", "method": "wait"})
        data = encode_frame(FrameType.REQUEST, 1, msgpack_encode({}), md) + encode_frame(FrameType.CANCEL, 1)
        _reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        try:
            writer.write(data)  # one write: the server reads REQUEST and CANCEL together
            await asyncio.wait_for(probe.started.wait(), timeout=2)
            await asyncio.wait_for(probe.cancelled.wait(), timeout=2)
        finally:
            writer.close()


async def test_keyword_only_parameters() -> None:
    async with Server([Quirks()], middleware=[]) as srv, Client(target=srv.address, middleware=[]) as c:
        assert await c.proxy(Quirks).add_kw(1, b=5) == 6


# -- streams ----------------------------------------------------------------------------------------


async def test_break_out_of_stream_cancels_it_on_the_server() -> None:
    svc = Quirks()
    async with Server([svc], middleware=[]) as srv, Client(target=srv.address, middleware=[]) as c:
        async for _ in c.stream("quirks", "ticks", {"n": 100_000}):
            break
        gc.collect()
        await asyncio.wait_for(svc.stream_closed.wait(), timeout=2)
        assert c._first_peer().connections[0].pending == {}


async def test_dynamic_stream_uses_the_client_default_timeout() -> None:
    async with Server([Quirks()], middleware=[]) as srv:
        async with Client(target=srv.address, middleware=[], timeout=0.2) as c:
            with pytest.raises(RpcError) as info:
                await asyncio.wait_for(c.stream("quirks", "hang").__anext__(), timeout=2)
            assert info.value.code is StatusCode.DEADLINE_EXCEEDED


# -- client deadline FIFO ---------------------------------------------------------------------------


async def test_finished_calls_do_not_keep_their_responses_alive() -> None:
    async with Server([Greeter()], middleware=[]) as srv:
        async with Client(target=srv.address, middleware=[], timeout=60) as c:
            g = c.proxy(Greeter)
            await g.hello("warm")
            gc.collect()
            tracemalloc.start()
            try:
                base = tracemalloc.get_traced_memory()[0]
                for _ in range(16):
                    await g.big(1 << 20)
                gc.collect()
                retained = tracemalloc.get_traced_memory()[0] - base
            finally:
                tracemalloc.stop()
            assert retained < 4 * (1 << 20)


# -- pool -----------------------------------------------------------------------------------------


async def test_peer_that_accepts_then_closes_is_not_reconnected_in_a_hot_loop() -> None:
    accepts = 0
    storm = asyncio.Event()

    def on_accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepts
        accepts += 1
        if accepts >= 50:
            storm.set()
        writer.close()

    listener = await asyncio.start_server(on_accept, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        async with Client(target=f"127.0.0.1:{port}", middleware=[], timeout=1) as c:
            with pytest.raises(RpcError):
                await c.proxy(Greeter).hello("x")
            # The default policy waits 1 s after a failure: 50 connects within 1 s is a storm.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(storm.wait(), timeout=1.0)
    finally:
        listener.close()


async def test_close_during_connect_fails_waiters_with_rpc_error() -> None:
    started = asyncio.Event()

    async def slow_connect(on_state_change):  # type: ignore[no-untyped-def]
        started.set()
        await asyncio.Event().wait()

    peer = Peer("10.0.0.1:1", slow_connect, backoff=Backoff(BackoffPolicy()))
    waiter = asyncio.create_task(peer.acquire())
    await asyncio.wait_for(started.wait(), timeout=2)
    await peer.close()
    with pytest.raises(RpcError):
        await asyncio.wait_for(waiter, timeout=2)


# -- retries --------------------------------------------------------------------------------------


async def test_invalid_argument_is_not_resent() -> None:
    seen = 0
    async with Server([Greeter()], middleware=[]) as srv:
        original = srv._listener._dispatch

        def counting(conn, frame):  # type: ignore[no-untyped-def]
            nonlocal seen
            seen += 1
            original(conn, frame)

        srv._listener._dispatch = counting
        async with Client(target=srv.address, middleware=[]) as c:
            with pytest.raises(RpcError) as info:
                await c.call("greeter", "hello", {"name": 5})
            assert info.value.code is StatusCode.INVALID_ARGUMENT
    assert seen == 1


# -- shutdown -------------------------------------------------------------------------------------


async def test_stop_does_not_leave_non_reading_clients_connected() -> None:
    srv = Server([Greeter()], middleware=[])
    await srv.start()
    sock = socket.create_connection(("127.0.0.1", srv.port))
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        md = encode_metadata({"service": "greeter", "method": "big"})
        request = encode_frame(FrameType.REQUEST, 0, msgpack_encode({"size": 1_000_000}), md)
        sock.sendall(b"".join(request[:8] + (i + 1).to_bytes(4, "big") + request[12:] for i in range(20)))
        for _ in range(200):  # until the server is paused on us (bounded)
            if any(conn._paused for conn in srv._listener.connections):
                break
            await asyncio.sleep(0.01)
        conns = list(srv._listener.connections)
        assert conns and conns[0]._paused
        await asyncio.wait_for(srv.stop(grace=0.1), timeout=5)
        assert all(conn.closed.done() for conn in conns)
    finally:
        sock.close()
