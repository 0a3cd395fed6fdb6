"""What each layer of the server's hot path costs: the dispatch of server_meshkit.py rebuilt in
steps, each run counting one more step, so that instruction counts can be subtracted.

    bash bench/micro/icount.sh bench/micro/server_layers.py --layers N   # N = 1 … 6

1. framing alone: frame in, a fixed answer encoded and queued (the connection, decoder and writer);
2. + the metadata cache lookup and the handler's own copy of the metadata;
3. + decoding the arguments into the method's Struct;
4. + the call's Context (with its deadline from the loop's clock);
5. + the handler's coroutine: made, stepped once, its StopIteration caught;
6. + a fresh copy of the contextvars context with the Context set in it.

The full dispatcher (server_meshkit.py) does 6 and the checks around it (shedding, flags,
streams, the result's type, the 3.11 eager-step bookkeeping). docs/benchmarks.md has the figures.
"""

from __future__ import annotations

import asyncio
import sys
import time
from contextvars import copy_context
from typing import Any

import msgspec
import uvloop

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _common import BATCH, ITEM, Echo
from server_meshkit import NullTransport

from meshkit import Server
from meshkit.protocol.frames import Frame, FrameType, encode_frame
from meshkit.protocol.metadata import MetadataTemplate
from meshkit.rpc.context import Context, _current
from meshkit.transport.server import ServerConnection


def layered_dispatch(srv: Server, loop: asyncio.AbstractEventLoop, layers: int) -> Any:
    encode = msgspec.msgpack.encode
    dispatcher = srv._dispatcher

    def dispatch(conn: ServerConnection, frame: Frame) -> None:
        sid = frame.stream_id
        value: Any = ITEM
        if layers >= 2:
            entry = dispatcher.md_cache.get(frame.metadata) or dispatcher.resolve(conn, sid, frame.metadata)
            assert entry is not None
            template, route, budget = entry
            md = template.copy()
        if layers >= 3:
            args = route.decode(frame.body)
        if layers >= 4:
            ctx = Context("echo", "echo", md, loop.time() + budget, conn.peer, loop.time, None)
        if layers >= 5:
            coro = route.invoke(args)
            try:
                coro.send(None)
            except StopIteration as stop:
                value = stop.value
        if layers >= 6:
            context = copy_context()
            context.run(_current.set, ctx)
        conn.send(conn.proto.send_response(sid, encode(value)))

    return dispatch


async def main(rounds: int, layers: int) -> None:
    loop = asyncio.get_running_loop()
    srv = Server([Echo()], middleware=[])
    srv._dispatcher.open(loop, 0.005)
    conn = ServerConnection(loop, srv.limits, None, layered_dispatch(srv, loop, layers), lambda c: None, lambda c: None)
    conn.connection_made(NullTransport())  # type: ignore[arg-type]
    metadata = MetadataTemplate({"service": "echo", "method": "echo"}).render(9000)
    body = msgspec.msgpack.encode({"item": ITEM})
    batch = b"".join(encode_frame(FrameType.REQUEST, i + 1, body, metadata) for i in range(BATCH))
    cpu = time.process_time()
    for _ in range(rounds):
        conn.data_received(batch)
        await asyncio.sleep(0)
    print(f"server, {layers} layers: {(time.process_time() - cpu) / (rounds * BATCH) * 1e6:.2f} us CPU per call")


if __name__ == "__main__":
    uvloop.install()
    n = int(sys.argv[sys.argv.index("--layers") + 1]) if "--layers" in sys.argv else 6
    asyncio.run(main(int(sys.argv[1]), n))
