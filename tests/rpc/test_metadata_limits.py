"""Metadata over the limit costs that one call, never the connection other calls share: the
client refuses to send it, a server refuses just that call, a client fails just that answer."""

from __future__ import annotations

import asyncio

import pytest

from meshkit import Client, RpcError, Server, StatusCode
from meshkit.protocol.decoder import FrameDecoder
from meshkit.protocol.frames import FrameType, encode_frame
from meshkit.protocol.limits import Limits
from tests.rpc.services import Greeter


@pytest.mark.parametrize("size", [20_000, 70_000])  # over the default 16 KiB; over the wire's u16
async def test_the_client_refuses_metadata_over_its_limit_before_sending(size: int) -> None:
    async with Server([Greeter()], middleware=[]) as server, Client(target=server.address, middleware=[]) as client:
        greeter = client.proxy(Greeter)
        with pytest.raises(RpcError) as caught:
            await greeter.with_options(metadata={"x": "a" * size}).hello("x")
        assert caught.value.code is StatusCode.INVALID_ARGUMENT and caught.value.not_processed
        assert "over the limit of 16384 bytes" in caught.value.message and "greeter.hello" in caught.value.message
        assert await greeter.hello("ok") == "hello ok"


async def test_the_client_refuses_a_stream_with_metadata_over_its_limit() -> None:
    async with Server([Greeter()], middleware=[]) as server, Client(target=server.address, middleware=[]) as client:
        greeter = client.proxy(Greeter)
        with pytest.raises(RpcError) as caught:
            async for _ in greeter.with_options(metadata={"x": "a" * 20_000}).count(3):
                pass
        assert caught.value.code is StatusCode.INVALID_ARGUMENT


async def test_a_server_refuses_one_call_over_its_limit_and_keeps_the_connection() -> None:
    big = Limits(max_metadata_size=65_535)  # a client allowed more than the server takes
    async with Server([Greeter()], middleware=[]) as server:
        async with Client(target=server.address, middleware=[], limits=big) as client:
            greeter = client.proxy(Greeter)
            await greeter.hello("warm")
            [peer] = [eps.peers[server.address] for eps in client.endpoints().values()]
            connection = peer.ready
            results = await asyncio.gather(
                greeter.hello("a"),
                greeter.with_options(metadata={"x": "a" * 20_000}).hello("big"),
                greeter.hello("b"),
                return_exceptions=True,
            )
            assert results[0] == "hello a" and results[2] == "hello b"
            err = results[1]
            assert isinstance(err, RpcError) and err.code is StatusCode.INVALID_ARGUMENT and err.not_processed
            assert "over this server's limit of 16384 bytes" in err.message
            assert peer.ready is connection and connection is not None and connection.usable
            assert await greeter.hello("after") == "hello after"


async def test_a_client_fails_only_the_call_whose_answer_has_metadata_over_its_limit() -> None:
    answered = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answered
        decoder = FrameDecoder()
        while data := await reader.read(65536):
            for frame in decoder.feed(data):
                if frame.type != FrameType.REQUEST:
                    continue
                answered += 1
                metadata = b"\x80" + b"m" * 99 if answered == 1 else b""  # 100 bytes: over the client's 50
                writer.write(encode_frame(FrameType.RESPONSE, frame.stream_id, b"\xa2ok", metadata))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    address = f"127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with Client(target=address, middleware=[], limits=Limits(max_metadata_size=50)) as client:
            greeter = client.proxy(Greeter)
            with pytest.raises(RpcError) as caught:
                await greeter.hello("x")
            assert caught.value.code is StatusCode.RESOURCE_EXHAUSTED and not caught.value.not_processed
            assert "over this client's limit of 50 bytes" in caught.value.message
            [peer] = [eps.peers[address] for eps in client.endpoints().values()]
            connection = peer.ready
            assert await greeter.hello("y") == "ok"
            assert peer.ready is connection  # the same connection carried on
    finally:
        server.close()
