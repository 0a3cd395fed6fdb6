"""The gRPC system: a grpc.aio server and client with one unary ``Echo`` method (see echo.proto).

The client's callers all share ONE channel. Both ends run on the standard asyncio loop, which is
the loop grpc.aio supports (it runs its own completion-queue poller alongside).

Importing this module raises ImportError when grpcio is missing (it is the optional ``bench``
extra) and RuntimeError when the generated stubs need a newer grpcio; the harness skips the system.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from meshkit.benchmark import echo_pb2, echo_pb2_grpc
from meshkit.benchmark.closed_loop import closed_loop
from meshkit.benchmark.systems import HOST, AnnounceFn
from meshkit.benchmark.worker import wait_for_stop_signal

# The generated modules carry no type information; go through Any rather than sprinkle ignores.
_pb2: Any = echo_pb2
_pb2_grpc: Any = echo_pb2_grpc


def make_item() -> Any:
    return _pb2.Item(id=42, name="alice", tags=["a", "b"])


class EchoServicer(echo_pb2_grpc.EchoServicer):
    async def Echo(self, request: Any, context: Any) -> Any:
        return request


async def _serve(port: int, announce: AnnounceFn) -> None:
    server = grpc.aio.server()
    _pb2_grpc.add_EchoServicer_to_server(EchoServicer(), server)
    bound = server.add_insecure_port(f"{HOST}:{port}")
    if not bound:
        raise OSError(f"grpc could not bind {HOST}:{port}")
    await server.start()
    announce(bound)
    try:
        await wait_for_stop_signal()
    finally:
        await server.stop(1.0)


async def _load(port: int, concurrency: int, duration: float, warmup: float) -> dict[str, Any]:
    item = make_item()
    async with grpc.aio.insecure_channel(f"{HOST}:{port}") as channel:
        echo = _pb2_grpc.EchoStub(channel).Echo
        got = await echo(item)  # connects, and checks that the echo is right
        if got != item:
            raise RuntimeError(f"echo returned {got!r}, expected {item!r}")
        return await closed_loop(echo, item, concurrency, duration, warmup)


def serve(system: str, port: int, announce: AnnounceFn) -> None:
    asyncio.run(_serve(port, announce))


def load(system: str, port: int, concurrency: int, duration: float, warmup: float) -> dict[str, Any]:
    result = asyncio.run(_load(port, concurrency, duration, warmup))
    result["loop"] = "asyncio"
    return result
