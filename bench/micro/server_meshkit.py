"""meshkit's server path in-process: ROUNDS batches of 64 REQUEST frames fed to one connection.

python bench/micro/server_meshkit.py ROUNDS [--middleware] [--suspend]

``--suspend``: the handler awaits ``asyncio.sleep(0)`` once, so every call takes the path of a
handler that suspends (its Task continues it, see rpc/eager.py).
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import msgspec
import uvloop

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _common import BATCH, ITEM, Echo, Item

from meshkit import Server, Service, rpc
from meshkit.protocol.frames import FrameType, encode_frame
from meshkit.protocol.metadata import MetadataTemplate
from meshkit.transport.server import ServerConnection


class NullTransport:
    def write(self, data: bytes) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class SuspendingEcho(Service, name="echo"):
    @rpc
    async def echo(self, item: Item) -> Item:
        await asyncio.sleep(0)
        return item


async def main(rounds: int, middleware: bool, suspend: bool) -> None:
    loop = asyncio.get_running_loop()
    srv = Server([SuspendingEcho() if suspend else Echo()], middleware=None if middleware else [])
    srv._dispatcher.open(loop, 0.005)  # what Server.start does, without a listener
    conn = ServerConnection(loop, srv.limits, None, srv._dispatch, lambda c: None, lambda c: None)
    conn.connection_made(NullTransport())  # type: ignore[arg-type]
    metadata = MetadataTemplate({"service": "echo", "method": "echo"}).render(9000)
    body = msgspec.msgpack.encode({"item": ITEM})
    batch = b"".join(encode_frame(FrameType.REQUEST, i + 1, body, metadata) for i in range(BATCH))
    passes = 3 if suspend else 1
    cpu = time.process_time()
    for _ in range(rounds):
        conn.data_received(batch)
        for _ in range(passes):  # suspended calls: resume, finish, answer before the ids are reused
            await asyncio.sleep(0)
    print(f"server: {(time.process_time() - cpu) / (rounds * BATCH) * 1e6:.2f} us CPU per call")


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main(int(sys.argv[1]), "--middleware" in sys.argv, "--suspend" in sys.argv))
