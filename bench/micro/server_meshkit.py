"""meshkit's server path in-process: ROUNDS batches of 64 REQUEST frames fed to one connection.

python bench/micro/server_meshkit.py ROUNDS [--middleware]
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import msgspec
import uvloop

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _common import BATCH, ITEM, Echo

from meshkit import Server
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


async def main(rounds: int, middleware: bool) -> None:
    loop = asyncio.get_running_loop()
    srv = Server([Echo()], middleware=None if middleware else [])
    srv._dispatcher.open(loop, 0.005)  # what Server.start does, without a listener
    conn = ServerConnection(loop, srv.limits, None, srv._dispatch, lambda c: None, lambda c: None)
    conn.connection_made(NullTransport())  # type: ignore[arg-type]
    metadata = MetadataTemplate({"service": "echo", "method": "echo"}).render(9000)
    body = msgspec.msgpack.encode({"item": ITEM})
    batch = b"".join(encode_frame(FrameType.REQUEST, i + 1, body, metadata) for i in range(BATCH))
    cpu = time.process_time()
    for _ in range(rounds):
        conn.data_received(batch)
        await asyncio.sleep(0)
    print(f"server: {(time.process_time() - cpu) / (rounds * BATCH) * 1e6:.2f} us CPU per call")


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main(int(sys.argv[1]), "--middleware" in sys.argv))
