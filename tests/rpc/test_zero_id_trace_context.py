"""A server without the tracing middleware does not trust a binary trace context it has not checked:
a context with a zero trace id or span id gives no log ids and is not forwarded by a handler's own
calls, while the ids of a valid textual ``traceparent`` are still logged.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from meshkit import Client, Server, Service, current_context, rpc
from meshkit.observe import tracing
from meshkit.rpc.middleware import Call, Handler, Middleware

TEXT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
ZERO_TRACE = bytes(16) + b"\x07" * 8 + b"\x00"
ZERO_SPAN = b"\x07" * 16 + bytes(8) + b"\x00"


def _forcing(context: bytes) -> Middleware:
    """Client middleware that sends ``context`` as the binary trace context of every call."""

    def middleware(next_handler: Handler) -> Handler:
        def handler(call: Call) -> Awaitable[Any]:
            call.trace = context
            return next_handler(call)

        return handler

    return middleware


class Back(Service, name="zero_id_back"):
    @rpc
    async def ids(self) -> list[str] | None:
        ids = tracing.current_ids()
        return None if ids is None else list(ids)

    @rpc
    async def seen(self) -> bytes | None:
        ctx = current_context()
        assert ctx is not None
        return ctx.trace


class Front(Service, name="zero_id_front"):
    def __init__(self, back: str) -> None:
        self.client = Client(target=back, middleware=[tracing.middleware("client", TracerProvider(), ratio=0.0)])

    @rpc
    async def forward(self) -> bytes | None:
        return await self.client.proxy(Back).seen()


@pytest.mark.parametrize("bad", [ZERO_TRACE, ZERO_SPAN], ids=["zero-trace", "zero-span"])
@pytest.mark.parametrize("chain", [[], None], ids=["no-middleware", "default-middleware"])
async def test_log_ids_ignore_a_zero_id_context(bad: bytes, chain: list[object] | None) -> None:
    async with Server([Back()], "127.0.0.1", middleware=chain) as srv:  # type: ignore[arg-type]
        async with Client(target=srv.address, middleware=[_forcing(bad)]) as client:
            ids = await client.proxy(Back).ids()
    assert ids is None


async def test_log_ids_of_a_textual_traceparent_without_the_tracing_middleware() -> None:
    async with Server([Back()], "127.0.0.1", middleware=[]) as srv:
        async with Client(target=srv.address, middleware=[], metadata={"traceparent": TEXT}) as client:
            ids = await client.proxy(Back).ids()
    assert ids == [TEXT[3:35], TEXT[36:52]]


@pytest.mark.parametrize("bad", [ZERO_TRACE, ZERO_SPAN], ids=["zero-trace", "zero-span"])
async def test_a_handler_does_not_forward_a_zero_id_context(bad: bytes) -> None:
    async with Server([Back()], "127.0.0.1", middleware=[]) as back:
        front = Front(back.address)
        try:
            async with Server([front], "127.0.0.1", middleware=[]) as srv:
                async with Client(target=srv.address, middleware=[_forcing(bad)]) as client:
                    downstream = await client.proxy(Front).forward()
        finally:
            await front.client.close()
    assert downstream is not None and tracing.valid_context(downstream), downstream
