"""The demo's restock job: one truck for all inventories, dispatched by the elected leader.

Every inventory process campaigns in the election ``inventory-restock`` on the built-in registry
(``meshkit://``, :mod:`meshkit.coord`); the one elected runs the job: every :data:`PERIOD` it
takes the lock ``inventory-restock-run`` and calls ``inventory.receive`` on every registered
inventory with the lock's fencing token, and each refuses a token lower than one it has seen
(a job that lost its lease without noticing cannot restock twice). Kill the leader (``meshkit
demo --kill-after``) and another inventory is elected within :data:`TTL`; the live view shows who
leads. Without ``$MESHKIT_DEMO_COORD`` (an inventory run on its own) there is no job and each
inventory restocks itself when it runs out.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from meshkit.coord import Election, EngineUnavailable, LockLost, Locks, LockTimeout
from meshkit.discovery import open_registry
from meshkit.errors import RpcError
from meshkit.rpc.client import Client

log = logging.getLogger("meshkit.demo.restock")

ELECTION = "inventory-restock"
LOCK = "inventory-restock-run"
#: The leader's lease: a dead leader's job moves within this.
TTL = 2.0
#: How often the leader dispatches the truck.
PERIOD = 0.5


class RestockJob:
    """Campaigns as ``name`` on ``url`` and, while leader, restocks every inventory it finds."""

    def __init__(self, name: str, url: str) -> None:
        self.name = name
        self.url = url
        self.leading = False
        self.runs = 0
        self._clients: dict[str, Client] = {}

    async def run(self) -> None:
        election = Election(self.url, ELECTION, ttl=TTL)
        locks = Locks(self.url)
        registry = open_registry(self.url)
        try:
            while True:
                try:
                    async with election.campaign(self.name) as term:
                        self.leading = True
                        log.info("%s leads the restock job (term %d)", self.name, term.token)
                        while True:
                            async with locks.lock(LOCK, ttl=TTL, wait=TTL) as held:
                                await self._restock_all(registry, held.token)
                            await asyncio.sleep(PERIOD)
                except (LockLost, LockTimeout, EngineUnavailable, RpcError) as exc:
                    log.warning("restock job on %s: %s; campaigning again", self.name, exc)
                finally:
                    self.leading = False
                await asyncio.sleep(PERIOD)
        finally:
            await asyncio.gather(*(c.close() for c in self._clients.values()), return_exceptions=True)
            await asyncio.gather(election.close(), locks.close(), registry.close(), return_exceptions=True)

    async def _restock_all(self, registry: Any, token: int) -> None:
        for instance in await registry.resolve("inventory"):
            address = f"{instance.host}:{instance.port}"
            client = self._clients.get(address)
            if client is None:
                client = self._clients[address] = Client(target=address, timeout=1.0, middleware=[])
            try:
                await client.call("inventory", "receive", {"token": token})
            except RpcError as exc:
                log.info("restocking %s failed: %s", address, exc)  # a dead instance: the next run retries
        self.runs += 1


class RestockLeader:
    """Which inventory runs the restock job (the elected one), polled from the registry."""

    def __init__(self) -> None:
        self.leader: str | None = None

    async def poll(self, url: str, stop: asyncio.Event) -> None:
        async with Election(url, ELECTION, ttl=TTL) as election:
            while not stop.is_set():
                try:
                    self.leader = await election.leader()
                except (RpcError, EngineUnavailable):
                    pass  # the view keeps the last known leader
                await asyncio.sleep(0.25)
