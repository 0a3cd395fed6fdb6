"""Unary calls end to end in one process over real loopback sockets."""

from __future__ import annotations

import asyncio

import pytest

from meshkit import Client, RpcError, Server, StatusCode
from tests.rpc.services import Greeter, Item, Point, Probe


async def test_hello(client: Client) -> None:
    assert await client.proxy(Greeter).hello("ann") == "hello ann"


async def test_struct_and_dataclass_round_trip(client: Client) -> None:
    g = client.proxy(Greeter)
    assert await g.echo(Item(42, "alice", ["a", "b"])) == Item(42, "alice", ["a", "b"])
    assert await g.move(Point(1, 2)) == Point(2, 2)
    assert await g.move(Point(1, 2), dx=5) == Point(6, 2)


@pytest.mark.parametrize(
    ("method", "args", "kwargs", "field"),
    [
        ("hello", (3,), {}, "name"),
        ("echo", (Item("x", "a", []),), {}, "item.id"),  # type: ignore[arg-type]
        ("echo", (Item(1, "a", [1]),), {}, "item.tags[0]"),  # type: ignore[list-item]
        ("move", (Point(1, 2),), {"dx": "far"}, "dx"),
    ],
)
async def test_wrong_type_is_invalid_argument_naming_the_field(
    client: Client, method: str, args: tuple[object, ...], kwargs: dict[str, object], field: str
) -> None:
    with pytest.raises(RpcError) as info:
        await getattr(client.proxy(Greeter), method)(*args, **kwargs)
    assert info.value.code is StatusCode.INVALID_ARGUMENT
    assert f"`{field}`" in info.value.message


async def test_missing_and_unexpected_arguments(client: Client) -> None:
    g = client.proxy(Greeter)
    with pytest.raises(RpcError) as info:
        await g.hello()  # type: ignore[call-arg]
    assert info.value.code is StatusCode.INVALID_ARGUMENT and "name" in info.value.message
    with pytest.raises(RpcError) as info:
        await client.call("greeter", "hello", {})
    assert info.value.code is StatusCode.INVALID_ARGUMENT and "`name`" in info.value.message


async def test_unknown_service_and_method(client: Client) -> None:
    with pytest.raises(RpcError) as info:
        await client.call("nope", "x", {})
    assert info.value.code is StatusCode.UNIMPLEMENTED and "greeter" in info.value.message
    with pytest.raises(RpcError) as info:
        await client.call("greeter", "helo", {"name": "x"})
    assert info.value.code is StatusCode.UNIMPLEMENTED and "hello" in info.value.message


async def test_handler_errors_keep_code_message_and_details(client: Client) -> None:
    with pytest.raises(RpcError) as info:
        await client.proxy(Greeter).fail(int(StatusCode.NOT_FOUND), "no such order")
    assert info.value.code is StatusCode.NOT_FOUND
    assert info.value.message == "no such order"
    assert info.value.details == {"hint": "details survive"}


async def test_unexpected_exception_is_unknown(client: Client) -> None:
    with pytest.raises(RpcError) as info:
        await client.proxy(Greeter).crash()
    assert info.value.code is StatusCode.UNKNOWN
    assert "ValueError: boom" in info.value.message


async def test_dynamic_call_and_metadata(client: Client) -> None:
    assert await client.call("greeter", "hello", {"name": "bob"}) == "hello bob"
    md = await client.proxy(Greeter).with_options(metadata={"caller": "tests", "tenant": 7}).whoami()
    assert md["caller"] == "tests" and md["tenant"] == 7
    assert md["service"] == "greeter" and md["method"] == "whoami"


async def test_reserved_metadata_keys_are_refused(client: Client) -> None:
    with pytest.raises(ValueError, match="reserved"):
        client.proxy(Greeter).with_options(metadata={"deadline": 5})


async def test_thousand_concurrent_calls_on_one_connection(client: Client, server: Server) -> None:
    g = client.proxy(Greeter)
    items = [Item(i, f"n{i}", [str(i)]) for i in range(1000)]
    results = await asyncio.gather(*(g.echo(it) for it in items))
    assert results == items
    assert server.connections == 1


async def test_concurrent_calls_that_suspend_are_matched_by_stream_id(client: Client) -> None:
    g = client.proxy(Greeter)
    # Handlers finish in reverse order of their start; each caller must still get its own answer.
    delays = [0.001 * (50 - i) for i in range(50)]
    results = await asyncio.gather(*(g.sleep(d) for d in delays))
    assert results == ["slept"] * 50
    names = await asyncio.gather(*(g.hello(f"p{i}") for i in range(200)))
    assert names == [f"hello p{i}" for i in range(200)]


async def test_json_and_compression(server: Server) -> None:
    async with Client(target=server.address, json=True) as c:
        assert await c.proxy(Greeter).echo(Item(1, "j", ["x"])) == Item(1, "j", ["x"])
    async with Client(target=server.address, compression=True) as c:
        assert await c.proxy(Greeter).big(100_000) == b"x" * 100_000
        big = Item(1, "z" * 50_000, [])
        assert await c.proxy(Greeter).echo(big) == big


async def test_result_over_frame_limit_is_refused_by_client(probe: Probe) -> None:
    from meshkit import Limits

    async with Server([Greeter(probe)], middleware=[]) as srv:
        async with Client(target=srv.address, limits=Limits(max_frame_size=1024)) as c:
            # The server's answer is over the client's limit: that connection is closed, the call fails
            # with UNAVAILABLE rather than hanging, and a later small call works on a new connection.
            with pytest.raises(RpcError) as info:
                await c.proxy(Greeter).big(10_000)
            assert info.value.code is StatusCode.UNAVAILABLE
            assert await c.proxy(Greeter).with_options(timeout=5).hello("again") == "hello again"


async def test_request_over_frame_limit_fails_locally(server: Server) -> None:
    from meshkit import Limits

    async with Client(target=server.address, limits=Limits(max_frame_size=1000)) as c:
        with pytest.raises(RpcError) as info:
            await c.proxy(Greeter).hello("x" * 5000)
        assert info.value.code is StatusCode.RESOURCE_EXHAUSTED


async def test_result_over_the_servers_frame_limit_fails_that_call_and_keeps_the_connection(probe: Probe) -> None:
    from meshkit import Limits

    async with Server([Greeter(probe)], middleware=[], limits=Limits(max_frame_size=1024)) as srv:
        async with Client(target=srv.address) as c:
            greeter = c.proxy(Greeter)
            assert await greeter.hello("first") == "hello first"
            [conn] = list(srv._listener.connections)
            with pytest.raises(RpcError) as info:
                await greeter.big(10_000)
            assert info.value.code is StatusCode.RESOURCE_EXHAUSTED
            assert "result of" in info.value.message and "1024-byte frame limit" in info.value.message
            assert await greeter.hello("again") == "hello again"
            assert list(srv._listener.connections) == [conn]  # the same connection served all three


async def test_a_compressible_request_over_the_frame_limit_goes_compressed(server: Server) -> None:
    from meshkit import Limits

    async with Client(target=server.address, limits=Limits(max_frame_size=1000), compression=True) as c:
        assert await c.proxy(Greeter).hello("x" * 5000) == "hello " + "x" * 5000


async def test_unreachable_target_is_unavailable() -> None:
    async with Client(target="127.0.0.1:1", connect_timeout=1.0) as c:
        with pytest.raises(RpcError) as info:
            await c.proxy(Greeter).hello("x")
    assert info.value.code is StatusCode.UNAVAILABLE
    assert "127.0.0.1:1" in info.value.message


async def test_bad_target_strings() -> None:
    for bad in ["", "localhost", "h:port", "h:70000", ","]:
        with pytest.raises(ValueError):
            Client(target=bad)
