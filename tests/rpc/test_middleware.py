"""Middleware chains, the context, and the access log."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from meshkit import Call, Client, Handler, Middleware, RpcError, Server, StatusCode
from tests.rpc.services import Greeter, Probe


def recorder(name: str, log: list[str]) -> Middleware:
    def middleware(next_handler: Handler) -> Handler:
        async def handler(call: Call) -> Any:
            log.append(f"{name}>{call.service}.{call.method}")
            try:
                return await next_handler(call)
            finally:
                log.append(f"{name}<")

        return handler

    return middleware


async def test_order_of_server_and_client_chains(probe: Probe) -> None:
    log: list[str] = []
    async with Server([Greeter(probe)], middleware=[recorder("s1", log), recorder("s2", log)]) as srv:
        async with Client(target=srv.address, middleware=[recorder("c1", log), recorder("c2", log)]) as c:
            assert await c.proxy(Greeter).hello("a") == "hello a"
    assert log == [
        "c1>greeter.hello",
        "c2>greeter.hello",
        "s1>greeter.hello",
        "s2>greeter.hello",
        "s2<",
        "s1<",
        "c2<",
        "c1<",
    ]


async def test_middleware_can_reject_and_add_metadata(probe: Probe) -> None:
    def auth(next_handler: Handler) -> Handler:
        async def handler(call: Call) -> Any:
            if call.metadata.get("authorization") != "secret":
                raise RpcError(StatusCode.UNAUTHENTICATED, "missing token")
            return await next_handler(call)

        return handler

    def add_token(next_handler: Handler) -> Handler:
        async def handler(call: Call) -> Any:
            call.metadata["authorization"] = "secret"
            return await next_handler(call)

        return handler

    async with Server([Greeter(probe)], middleware=[auth]) as srv:
        async with Client(target=srv.address, middleware=[]) as c:
            with pytest.raises(RpcError) as info:
                await c.proxy(Greeter).hello("a")
            assert info.value.code is StatusCode.UNAUTHENTICATED
        async with Client(target=srv.address, middleware=[add_token]) as c:
            assert await c.proxy(Greeter).hello("a") == "hello a"


async def test_access_log_line_per_call(probe: Probe, caplog: pytest.LogCaptureFixture) -> None:
    async with Server([Greeter(probe)]) as srv, Client(target=srv.address, middleware=[]) as c:
        with caplog.at_level(logging.INFO, logger="meshkit.access"):
            await c.proxy(Greeter).with_options(metadata={"request-id": "req-42"}).hello("a")
            with pytest.raises(RpcError):
                await c.proxy(Greeter).fail(int(StatusCode.NOT_FOUND), "x")
    records = [r for r in caplog.records if r.name == "meshkit.access"]
    assert len(records) == 2
    ok, failed = (r.meshkit for r in records)  # type: ignore[attr-defined]
    assert ok["service"] == "greeter" and ok["method"] == "hello" and ok["status"] == "OK"
    assert ok["request_id"] == "req-42" and ok["peer"].startswith("127.0.0.1:")
    assert ok["duration_ms"] >= 0
    assert failed["status"] == "NOT_FOUND" and failed["method"] == "fail"


async def test_streams_pass_through_server_middleware(probe: Probe) -> None:
    log: list[str] = []
    async with Server([Greeter(probe)], middleware=[recorder("s", log)]) as srv:
        async with Client(target=srv.address) as c:
            assert [x async for x in c.proxy(Greeter).count(3)] == [0, 1, 2]
    assert log == ["s>greeter.count", "s<"]


async def test_a_registered_front_leads_every_default_chain_made_afterwards() -> None:
    """Layers above rpc (tracing) put middleware at the front of default chains through
    ``add_to_default_chains``; explicit chains are left alone."""
    from meshkit.rpc import middleware as mw
    from tests.rpc.services import Greeter

    seen: list[str] = []

    def recorder(side: str) -> Middleware:
        def wrap(next_handler: Handler) -> Handler:
            def handler(call: Call) -> Any:
                seen.append(f"{side}:{call.spec.qualname}")
                return next_handler(call)

            return handler

        return wrap

    def front_server() -> Middleware:
        return recorder("server")

    def front_client() -> Middleware:
        return recorder("client")

    mw.add_to_default_chains("server", front_server)
    mw.add_to_default_chains("client", front_client)
    try:
        async with Server([Greeter()]) as srv, Client(target=srv.address) as client:
            assert await client.proxy(Greeter).hello("ann") == "hello ann"
            async with Client(target=srv.address, middleware=[]) as explicit:
                await explicit.proxy(Greeter).hello("bob")
    finally:
        mw._DEFAULT_FRONT["server"].remove(front_server)
        mw._DEFAULT_FRONT["client"].remove(front_client)
    assert seen == ["client:greeter.hello", "server:greeter.hello", "server:greeter.hello"]
    with pytest.raises(ValueError, match="side"):
        mw.add_to_default_chains("edge", front_client)
