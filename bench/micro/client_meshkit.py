"""meshkit's client path in-process: 64 callers, each making ROUNDS calls; a fake transport answers.

python bench/micro/client_meshkit.py ROUNDS [--middleware] [--policy]

``--policy`` adds a default ``Policy()`` (a breaker and retries on every method); ``--policy-full``
a policy with a client limit and an SRE breaker on every method as well.
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

from meshkit import Client
from meshkit.policy import Breaker, ClientRule, Limit, Policy, PolicyConfig
from meshkit.protocol.frames import HEADER, MAGIC, VERSION, FrameType
from meshkit.transport.client import ClientConnection

ANSWER = msgspec.msgpack.encode(ITEM)


class EchoingTransport:
    """Answers every REQUEST frame written to it with a RESPONSE, one loop iteration later."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.protocol: ClientConnection | None = None
        self.out: list[bytes] = []
        self.scheduled = False

    def write(self, data: bytes) -> None:
        pos = 0
        while pos < len(data):
            _, _, _, _, md_len, sid, body_len = HEADER.unpack_from(data, pos)
            self.out.append(HEADER.pack(MAGIC, VERSION, FrameType.RESPONSE, 0, 0, sid, len(ANSWER)) + ANSWER)
            pos += 16 + md_len + body_len
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.deliver)

    def deliver(self) -> None:
        self.scheduled = False
        data = b"".join(self.out)
        self.out.clear()
        assert self.protocol is not None
        self.protocol.data_received(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def close(self) -> None:
        pass


def _policy(kind: str | None) -> Policy | None:
    if kind is None:
        return None
    if kind == "full":
        rule = ClientRule(limit=Limit(rate=1e9), breaker=Breaker(kind="sre"))
        return Policy(PolicyConfig(client={"*": rule}))
    return Policy()


async def main(rounds: int, middleware: bool, policy: str | None) -> None:
    loop = asyncio.get_running_loop()
    client = Client(target="127.0.0.1:1", middleware=None if middleware else [], policy=_policy(policy))
    peer = client._first_peer()
    conn = ClientConnection(loop, client.limits, None, peer._state_changed)
    transport = EchoingTransport(loop)
    transport.protocol = conn
    conn.connection_made(transport)  # type: ignore[arg-type]
    peer.connections.append(conn)
    peer._update_ready()
    echo = client.proxy(Echo).echo

    async def caller() -> None:
        for _ in range(rounds):
            await echo(ITEM)

    cpu = time.process_time()
    await asyncio.gather(*(caller() for _ in range(BATCH)))
    print(f"client: {(time.process_time() - cpu) / (rounds * BATCH) * 1e6:.2f} us CPU per call")


if __name__ == "__main__":
    uvloop.install()
    kind = "full" if "--policy-full" in sys.argv else "default" if "--policy" in sys.argv else None
    asyncio.run(main(int(sys.argv[1]), "--middleware" in sys.argv, kind))
