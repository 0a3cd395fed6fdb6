"""The raw echo's server in-process, for comparison with server_meshkit.py.

python bench/micro/server_raw.py ROUNDS
"""

from __future__ import annotations

import asyncio
import sys
import time

import msgpack
import uvloop

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _common import BATCH, PAYLOAD

from meshkit.benchmark.systems_raw import RawServerProtocol, _pack_length


class NullTransport:
    def write(self, data: bytes) -> None:
        pass


async def main(rounds: int) -> None:
    protocol = RawServerProtocol()
    protocol.connection_made(NullTransport())  # type: ignore[arg-type]
    pack = msgpack.Packer().pack
    batch = b"".join(_pack_length(len(b)) + b for b in (pack([i + 1, PAYLOAD]) for i in range(BATCH)))
    cpu = time.process_time()
    for _ in range(rounds):
        protocol.data_received(batch)
        await asyncio.sleep(0)
    print(f"raw server: {(time.process_time() - cpu) / (rounds * BATCH) * 1e6:.2f} us CPU per call")


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main(int(sys.argv[1])))
