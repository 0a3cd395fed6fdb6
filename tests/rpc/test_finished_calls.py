"""A finished call keeps nothing of its answer alive: sixteen 1 MiB answers in a row leave less than
4 MiB retained by the client."""

from __future__ import annotations

import gc
import tracemalloc

from meshkit import Client, Server
from tests.rpc.services import Greeter


async def test_finished_calls_do_not_keep_their_responses_alive() -> None:
    async with Server([Greeter()], middleware=[]) as srv:
        async with Client(target=srv.address, middleware=[], timeout=60) as c:
            g = c.proxy(Greeter)
            await g.hello("warm")
            gc.collect()
            tracemalloc.start()
            try:
                base = tracemalloc.get_traced_memory()[0]
                for _ in range(16):
                    await g.big(1 << 20)
                gc.collect()
                retained = tracemalloc.get_traced_memory()[0] - base
            finally:
                tracemalloc.stop()
            assert retained < 4 * (1 << 20)
