"""The raw baseline: what the same echo costs with almost nothing between the socket and the handler.

Plain asyncio Protocols on uvloop. A frame is a 4-byte big-endian length followed by a msgpack body
``[request_id, payload]``. All calls share ONE connection and are matched by request id. The server
decodes each frame in ``data_received``, calls the (plain function) handler inline and writes the
answer with one ``transport.write`` per frame, no coalescing; the client writes each request with
one ``transport.write`` and resolves the caller's future from ``data_received``.

No limits, deadlines, metadata, errors or keepalive: a floor to compare against, not a protocol.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Any, cast

import msgpack

from meshkit.benchmark.closed_loop import closed_loop
from meshkit.benchmark.systems import HOST, AnnounceFn
from meshkit.benchmark.worker import wait_for_stop_signal
from meshkit.transport.loop import has_uvloop, run

PAYLOAD: dict[str, Any] = {"id": 42, "name": "alice", "tags": ["a", "b"]}

_LENGTH = struct.Struct(">I")
_pack_length = _LENGTH.pack
_unpack_length = _LENGTH.unpack_from
_unpackb = msgpack.unpackb


def handle(payload: Any) -> Any:
    """The echo handler."""
    return payload


class _Framed(asyncio.Protocol):
    """Splits the byte stream into msgpack messages and hands each to :meth:`message_received`."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._pack = msgpack.Packer().pack

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, so no isinstance check.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        if buffer:  # a frame was split across reads: join, then parse from the joined copy
            buffer += data
            data = bytes(buffer)
            buffer.clear()
        view = memoryview(data)
        end = len(data)
        pos = 0
        on_message = self.message_received
        while end - pos >= 4:
            (size,) = _unpack_length(data, pos)
            frame_end = pos + 4 + size
            if frame_end > end:
                break
            on_message(_unpackb(view[pos + 4 : frame_end]))
            pos = frame_end
        if pos < end:
            buffer += view[pos:]

    def message_received(self, message: Any) -> None:
        raise NotImplementedError

    def send(self, message: Any) -> None:
        body = self._pack(message)
        self.transport.write(_pack_length(len(body)) + body)  # type: ignore[union-attr]


class RawServerProtocol(_Framed):
    def message_received(self, message: Any) -> None:
        request_id, payload = message
        self.send([request_id, handle(payload)])


class RawClientProtocol(_Framed):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._loop = loop
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0

    def call(self, payload: Any) -> asyncio.Future[Any]:
        self._next_id = request_id = self._next_id + 1
        future = self._loop.create_future()
        self._pending[request_id] = future
        self.send([request_id, payload])
        return future

    def message_received(self, message: Any) -> None:
        request_id, payload = message
        future = self._pending.pop(request_id, None)
        if future is not None and not future.done():
            future.set_result(payload)

    def connection_lost(self, exc: Exception | None) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(ConnectionResetError(f"connection lost: {exc}"))


async def _serve(port: int, announce: AnnounceFn) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(RawServerProtocol, HOST, port)
    announce(server.sockets[0].getsockname()[1])
    try:
        await wait_for_stop_signal()
    finally:
        server.close()


async def _load(port: int, concurrency: int, duration: float, warmup: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_connection(lambda: RawClientProtocol(loop), HOST, port)
    try:
        got = await protocol.call(PAYLOAD)
        if got != PAYLOAD:
            raise RuntimeError(f"echo returned {got!r}, expected {PAYLOAD!r}")
        return await closed_loop(protocol.call, PAYLOAD, concurrency, duration, warmup)
    finally:
        transport.close()


def serve(system: str, port: int, announce: AnnounceFn) -> None:
    run(_serve(port, announce))


def load(system: str, port: int, concurrency: int, duration: float, warmup: float) -> dict[str, Any]:
    result = run(_load(port, concurrency, duration, warmup))
    result["loop"] = "uvloop" if has_uvloop() else "asyncio"
    return result
