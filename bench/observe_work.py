"""The cost of observability on a handler that works: 100 µs of CPU per call, client and server in
one process, 64 callers, best of 3 rounds. ``python bench/observe_work.py meshkit-default
meshkit-metrics meshkit-traced-1`` prints calls/s and the ratio to the first system."""

from __future__ import annotations

import asyncio
import sys
import time

from meshkit import Client, Server, Service, rpc
from meshkit.benchmark.systems_meshkit import ITEM, Item, _middleware


def burn(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class Work(Service, name="work"):
    @rpc
    async def work(self, item: Item) -> Item:
        burn(0.0001)
        return item


async def run(system: str, n: int = 10000) -> float:
    server = Server([Work()], "127.0.0.1", 0, middleware=_middleware(system))
    await server.start()
    client = Client(target=server.address, middleware=_middleware(system, "client"))
    work = client.proxy(Work).work
    await work(ITEM)

    async def worker(k: int) -> None:
        for _ in range(k):
            await work(ITEM)

    t = time.perf_counter()
    await asyncio.gather(*(worker(n // 64) for _ in range(64)))
    dt = time.perf_counter() - t
    await client.close()
    await server.stop()
    return n / dt


async def main() -> None:
    res: dict[str, list[float]] = {}
    for _ in range(3):
        for s in sys.argv[1:]:
            res.setdefault(s, []).append(await run(s))
    base = max(res[sys.argv[1]])
    for s in sys.argv[1:]:
        print(f"{s:22s} {max(res[s]):8.0f} calls/s  {max(res[s]) / base:.3f}")


if __name__ == "__main__":
    from meshkit.transport.loop import run as run_loop

    run_loop(main())
