"""Malformed and oversized frames close only the offending connection."""

from __future__ import annotations

import asyncio
import struct

import pytest

from meshkit import Client, Server, StatusCode
from meshkit.protocol.decoder import FrameDecoder
from meshkit.protocol.frames import HEADER, Flags, FrameType, encode_frame
from meshkit.protocol.messages import decode_goaway
from meshkit.protocol.metadata import encode_metadata
from tests.rpc.services import Greeter


async def _send_raw(address: str, data: bytes) -> tuple[list[object], bool]:
    """Send bytes, read until the server closes; return the frames it sent and whether it closed."""
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    received = b""
    closed = False
    try:
        async with asyncio.timeout(5):
            while chunk := await reader.read(65536):
                received += chunk
            closed = True
    finally:
        writer.close()
    return list(FrameDecoder().feed(received)), closed


BAD_FRAMES = {
    "garbage": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad version": HEADER.pack(b"MK", 9, 1, 0, 0, 1, 0),
    "unknown type": HEADER.pack(b"MK", 1, 200, 0, 0, 1, 0),
    "2^31 body": HEADER.pack(b"MK", 1, 1, 0, 0, 1, 2**31),
    "metadata not a map": encode_frame(FrameType.REQUEST, 1, b"", b"\x93\x01\x02\x03"),
    "response from a client": encode_frame(FrameType.RESPONSE, 1, b""),
    "request on stream 0": encode_frame(FrameType.REQUEST, 0, b"", encode_metadata({"service": "greeter"})),
    "truncated metadata claim": encode_frame(FrameType.REQUEST, 1, b"", b"\xdf\xff\xff\xff\xff"),
    "TRACE flag, metadata too short for a context": encode_frame(
        FrameType.REQUEST, 1, b"", encode_metadata({"service": "greeter"}), Flags.TRACE
    ),
}


@pytest.mark.parametrize("name", list(BAD_FRAMES))
async def test_bad_frame_closes_only_that_connection(name: str) -> None:
    async with Server([Greeter()], middleware=[]) as srv, Client(target=srv.address, middleware=[]) as good:
        assert await good.proxy(Greeter).hello("before") == "hello before"
        frames, closed = await _send_raw(srv.address, BAD_FRAMES[name])
        assert closed, "the server must close a connection that broke the protocol"
        goaways = [f for f in frames if f.type == FrameType.GOAWAY]  # type: ignore[attr-defined]
        assert len(goaways) == 1
        body = decode_goaway(goaways[0].body)  # type: ignore[attr-defined]
        assert body.code != StatusCode.OK and "protocol error" in body.message
        # The well-behaved client on its own connection is unaffected.
        assert await good.proxy(Greeter).hello("after") == "hello after"
        assert srv.connections == 1


async def test_oversized_frame_is_refused_after_the_header() -> None:
    # Only the 16-byte header is sent: the server must not wait for 2 GiB before refusing.
    async with Server([Greeter()], middleware=[]) as srv:
        frames, closed = await _send_raw(srv.address, struct.pack(">2sBBBxHII", b"MK", 1, 1, 0, 0, 1, 2**31))
        assert closed
        body = decode_goaway(frames[0].body)  # type: ignore[attr-defined]
        assert body.code == StatusCode.RESOURCE_EXHAUSTED
