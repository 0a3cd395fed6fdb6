"""Scenarios every registry backend must pass, shared by the backend test modules."""

from __future__ import annotations

import asyncio
import collections

from meshkit import Client, Server
from tests.rpc.services import Who


async def servers_and_clients_meet(url: str) -> None:
    """Two servers register, a client spreads calls over both; one stops and leaves the rotation."""
    servers = [Server([Who(label)], middleware=[], registry=url) for label in "ab"]
    for s in servers:
        await s.start()
    try:
        async with Client(registry=url, balancer="round_robin") as c:
            got = collections.Counter([await c.proxy(Who).am_i() for _ in range(10)])
            assert got == {"a": 5, "b": 5}
            await servers[0].stop(grace=1)  # deregisters: the watch removes it
            for _ in range(200):
                if len(c._services["who"].nodes) == 1:
                    break
                await asyncio.sleep(0.05)
            assert {await c.proxy(Who).am_i() for _ in range(6)} == {"b"}
    finally:
        for s in servers:
            await s.stop(grace=1)
