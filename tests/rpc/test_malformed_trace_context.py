"""A call whose ``Call.trace`` (settable by any client middleware) is not a 25-byte context is
refused locally or sent without it: it never makes the server close the shared connection, so the
other calls in flight on it are answered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any

import pytest

from meshkit import Client, RpcError, Server, Service, rpc
from meshkit.rpc.middleware import Call, Handler, Middleware


class Held(Service, name="trace_held"):
    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    @rpc
    async def hold(self) -> str:
        self.started.set()
        await self.release.wait()
        return "done"

    @rpc
    async def other(self) -> str:
        return "other"


def _bad_trace_on_other(context: bytes) -> Middleware:
    """Client middleware that gives calls of ``other`` a malformed binary trace context."""

    def middleware(next_handler: Handler) -> Handler:
        def handler(call: Call) -> Awaitable[Any]:
            if call.spec.name == "other":
                call.trace = context
            return next_handler(call)

        return handler

    return middleware


@pytest.mark.parametrize("bad", [b"\x01" * 24, b"\x01" * 26, b""], ids=["24-bytes", "26-bytes", "empty"])
async def test_a_malformed_call_trace_does_not_break_other_calls_on_the_connection(bad: bytes) -> None:
    held = Held()
    async with Server([held], "127.0.0.1", middleware=[]) as srv:
        async with Client(target=srv.address, middleware=[_bad_trace_on_other(bad)], timeout=None) as client:
            proxy = client.proxy(Held)
            first = asyncio.ensure_future(proxy.hold())
            await held.started.wait()
            with contextlib.suppress(RpcError, ValueError, TypeError):
                await proxy.other()  # refused locally, or sent without the bad context: either is fine
            held.release.set()
            assert await first == "done"
