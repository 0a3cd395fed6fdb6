"""``not_processed`` describes this call, never a call its handler made: a handler that did its work
and then failed on a dependency that refused the connection (not_processed for *that* call) is
not resent, and its caller is not told a resend is safe."""

from __future__ import annotations

import socket

import pytest

from meshkit import Client, RpcError, Server, Service, rpc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Front(Service, name="front"):
    """A handler that does its work, then calls a dependency that is down."""

    def __init__(self, downstream: str) -> None:
        self.orders = 0
        self.downstream = downstream

    @rpc
    async def order(self, item: str) -> str:
        self.orders += 1  # the side effect: an order was written
        async with Client(target=self.downstream, connect_timeout=0.2) as dep:
            await dep.call("stock", "peek", {"item": item})  # UNAVAILABLE, not_processed (refused connection)
        return "ordered"


async def test_a_handlers_downstream_refusal_does_not_mark_the_call_not_processed() -> None:
    front = Front(f"127.0.0.1:{_free_port()}")
    async with Server([front], middleware=[]) as server, Client(target=server.address) as client:
        with pytest.raises(RpcError) as err:
            await client.proxy(Front).order("x")
    # The handler ran (and wrote an order): the caller must not be told it is safe to resend.
    assert front.orders == 1
    assert not err.value.not_processed
