"""Each call's handler runs as its own task: asyncio.timeout() and TaskGroup work in it, a context
variable it sets does not leak into the next call, a middleware's set/reset of a context variable
survives the handler's suspension, a handler raising CancelledError still gets an answer sent, and
a CANCEL read together with its REQUEST cancels the handler."""

from __future__ import annotations

import asyncio

import pytest

from meshkit import Client, RpcError, Server, StatusCode
from meshkit.protocol.frames import FrameType, encode_frame
from meshkit.protocol.metadata import encode_metadata
from meshkit.serde import msgpack_encode
from tests.rpc.services import Greeter, Probe, Quirks, handler_var


def _token_middleware(next_handler):  # type: ignore[no-untyped-def]
    # The standard set/reset pattern (OpenTelemetry's attach/detach works the same way).
    async def handler(call):  # type: ignore[no-untyped-def]
        token = handler_var.set(call.method)
        try:
            return await next_handler(call)
        finally:
            handler_var.reset(token)

    return handler


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
