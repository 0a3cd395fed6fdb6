"""The raw echo's client in-process, for comparison with client_meshkit.py.

python bench/micro/client_raw.py ROUNDS
"""

from __future__ import annotations

import asyncio
import sys
import time

import msgpack
import uvloop

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _common import BATCH, PAYLOAD

from meshkit.benchmark.systems_raw import RawClientProtocol, _pack_length


class EchoingTransport:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.protocol: RawClientProtocol | None = None
        self.out: list[bytes] = []
        self.scheduled = False
        self.pack = msgpack.Packer().pack

    def write(self, data: bytes) -> None:
        request_id, payload = msgpack.unpackb(data[4:])
        body = self.pack([request_id, payload])
        self.out.append(_pack_length(len(body)) + body)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.deliver)

    def deliver(self) -> None:
        self.scheduled = False
        data = b"".join(self.out)
        self.out.clear()
        assert self.protocol is not None
        self.protocol.data_received(data)


async def main(rounds: int) -> None:
    loop = asyncio.get_running_loop()
    protocol = RawClientProtocol(loop)
    transport = EchoingTransport(loop)
    transport.protocol = protocol
    protocol.connection_made(transport)  # type: ignore[arg-type]

    async def caller() -> None:
        for _ in range(rounds):
            await protocol.call(PAYLOAD)

    cpu = time.process_time()
    await asyncio.gather(*(caller() for _ in range(BATCH)))
    print(f"raw client: {(time.process_time() - cpu) / (rounds * BATCH) * 1e6:.2f} us CPU per call")


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main(int(sys.argv[1])))
