"""Arguments are checked on both sides: the server refuses what the method does not take, the
client refuses what it cannot bind, and both refusals say the call was never processed."""

from __future__ import annotations

import pytest

from meshkit import Client, RpcError, Server, StatusCode
from tests.rpc.services import Greeter, Quirks


async def test_unknown_argument_over_rpc_is_invalid_argument_naming_it(client: Client) -> None:
    with pytest.raises(RpcError) as info:
        await client.call("greeter", "hello", {"name": "ann", "bye": 5})
    err = info.value
    assert err.code is StatusCode.INVALID_ARGUMENT
    assert "`bye`" in err.message and "greeter.hello" in err.message
    assert "takes: name" in err.message
    assert err.not_processed


async def test_unknown_argument_of_a_method_with_defaults(client: Client) -> None:
    with pytest.raises(RpcError) as info:
        await client.call("greeter", "move", {"p": {"x": 1, "y": 2}, "dy": 3})
    assert info.value.code is StatusCode.INVALID_ARGUMENT and "`dy`" in info.value.message
    assert await client.call("greeter", "move", {"p": {"x": 1, "y": 2}, "dx": 3}) == {"x": 4, "y": 2}


async def test_client_side_binding_error_is_not_processed(client: Client) -> None:
    greeter = client.proxy(Greeter)
    with pytest.raises(RpcError) as info:
        await greeter.hello("ann", bye=5)  # type: ignore[call-arg]
    assert info.value.code is StatusCode.INVALID_ARGUMENT and info.value.not_processed


async def test_client_side_encoding_error_is_not_processed(client: Client) -> None:
    with pytest.raises(RpcError) as info:
        await client.proxy(Greeter).hello(object())  # type: ignore[arg-type]
    assert info.value.code is StatusCode.INVALID_ARGUMENT and info.value.not_processed


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


async def test_keyword_only_parameters_are_passed_by_name() -> None:
    async with Server([Quirks()], middleware=[]) as srv, Client(target=srv.address, middleware=[]) as c:
        assert await c.proxy(Quirks).add_kw(1, b=5) == 6
