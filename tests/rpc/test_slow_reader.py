"""A client that never reads its answers must not make the server buffer without bound."""

from __future__ import annotations

import asyncio
import socket

from meshkit import Client, Server
from meshkit.protocol.frames import FrameType, encode_frame
from meshkit.protocol.metadata import encode_metadata
from meshkit.serde import msgpack_encode
from tests.rpc.services import Greeter


def _server_buffered(srv: Server) -> int:
    total = 0
    for conn in srv._listener.connections:
        transport = conn._transport
        if transport is not None:
            total += transport.get_write_buffer_size()
    return total


async def test_client_that_never_reads_is_paused_and_others_keep_working() -> None:
    async with Server([Greeter()], middleware=[]) as srv, Client(target=srv.address, middleware=[]) as good:
        md = encode_metadata({"service": "greeter", "method": "big"})
        request = encode_frame(FrameType.REQUEST, 0, msgpack_encode({"size": 100_000}), md)
        sock = socket.create_connection(("127.0.0.1", srv.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        # 2,000 requests for 100 kB each = 200 MB of answers this client will never read.
        frames = b"".join(request[:8] + (i + 1).to_bytes(4, "big") + request[12:] for i in range(2000))
        sent = 0
        try:
            while sent < len(frames):
                try:
                    n = sock.send(frames[sent : sent + 65536])
                except BlockingIOError:
                    break  # the server stopped reading from us: exactly what we want
                sent += n
                # Give the server a turn; this is the loop's own scheduling, not a wait for time.
                await asyncio.sleep(0)
            for _ in range(50):
                await asyncio.sleep(0)
                assert await good.proxy(Greeter).hello("still here") == "hello still here"
            # Bounded: a few answers and the kernel buffers, far from 200 MB.
            assert _server_buffered(srv) < 8 * 1024 * 1024
        finally:
            sock.close()
        await loop.run_in_executor(None, lambda: None)
        assert await good.proxy(Greeter).hello("after") == "hello after"
