"""Helpers for testing services built on meshkit: an in-process server with a loopback client,
fake clocks, and fault injection (a TCP proxy that delays, blackholes, partitions, drops or resets;
service processes to SIGKILL, SIGSTOP and SIGCONT; ``spawn``: any child process, waited for until
it is ready and stopped by PID).

async with serve(Greeter()) as (server, client):
    assert await client.proxy(Greeter).hello("ann") == "hello ann"
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from meshkit.rpc.client import Client
from meshkit.rpc.middleware import Middleware
from meshkit.rpc.server import Server
from meshkit.rpc.service import Service
from meshkit.testing.memory import connect_in_memory
from meshkit.testing.netns import NetnsLink
from meshkit.testing.processes import ServiceProcess, registry_process, service_process
from meshkit.testing.proxy import FaultProxy, ProxyStats
from meshkit.testing.spawn import ChildNotReady, ChildProcess, spawn

__all__ = [
    "ChildNotReady",
    "ChildProcess",
    "FakeClock",
    "FakeSleep",
    "FaultProxy",
    "NetnsLink",
    "ProxyStats",
    "ServiceProcess",
    "connect_in_memory",
    "registry_process",
    "serve",
    "service_process",
    "spawn",
]


class FakeClock:
    """A clock that moves only when told to: pass it wherever meshkit takes a clock (balancers,
    breakers, limiters, the registry) and test time-dependent policies without sleeping.

        clock = FakeClock()
        breaker.on_failure(clock())
        clock.advance(5.0)
    """

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("time only moves forward")
        self.now += seconds
        return self.now


class FakeSleep:
    """An ``asyncio.sleep`` stand-in for policies (``Policy(sleep=FakeSleep(clock))``): records
    each delay and moves the fake clock by it instead of waiting, so a retry schedule is tested
    exactly and instantly."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if self.clock is not None:
            self.clock.advance(delay)


@asynccontextmanager
async def serve(
    *services: Service,
    middleware: Sequence[Middleware] | None = None,
    client_middleware: Sequence[Middleware] | None = None,
    policy: Any = None,
    **client_options: Any,
) -> AsyncIterator[tuple[Server, Client]]:
    """Start ``services`` on a free loopback port and yield the server and a client for it.
    ``policy`` guards the server; give the client one with ``client_policy=`` (passed on as
    the client's ``policy``)."""
    if "client_policy" in client_options:
        client_options["policy"] = client_options.pop("client_policy")
    server = Server(list(services), middleware=middleware, policy=policy)
    await server.start()
    client = Client(target=server.address, middleware=client_middleware, **client_options)
    try:
        yield server, client
    finally:
        await client.close()
        await server.stop(grace=1.0)
