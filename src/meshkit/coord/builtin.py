"""``meshkit://HOST:PORT[,HOST:PORT…]``: locks and elections served by meshkit's built-in registry.

The client of :mod:`meshkit.coord.service`. Every call goes to the first registry server of the list
(the ``pick_first`` balancer, as the registry client does) and to the next one only while that
one is unreachable. An acquire that is cancelled after the registry may have granted it (the answer was
on its way) sends a release for the same owner, so a cancelled waiter does not keep the lock for a
TTL. Driver errors become coordination errors here: UNAVAILABLE -> EngineUnavailable (with how to
start a registry), DEADLINE_EXCEEDED -> LockTimeout, INVALID_ARGUMENT -> BadLockRequest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from meshkit.coord.backend import Grant, Holder
from meshkit.coord.service import CoordService
from meshkit.errors import BadLockRequest, EngineUnavailable, LockTimeout, RpcError, StatusCode
from meshkit.rpc.client import Client
from meshkit.schemes import BackendURL
from meshkit.transport.backoff import BackoffPolicy

log = logging.getLogger("meshkit.coord")
#: How much longer than the wait an acquire call may take (the answer's way back).
CALL_SLACK = 5.0

#: Reconnects to a registry that went away are tried at least every second (the default schedule
#: grows to 120 s): a restarted registry is used again within a second, not minutes later.
RECONNECT = BackoffPolicy(initial=0.1, maximum=1.0)


class BuiltinLocks:
    """Locks and elections on a meshkit registry server (``meshkit registry``)."""

    def __init__(self, target: str) -> None:
        if not target:
            raise BadLockRequest("meshkit:// needs HOST:PORT of a registry server (meshkit registry --port PORT)")
        self.target = target
        self._client = Client(target=target, middleware=[], timeout=5.0, balancer="pick_first", backoff=RECONNECT)
        self._proxy: Any = self._client.proxy(CoordService)
        self._releases: set[asyncio.Task[Any]] = set()

    def _translate(self, exc: RpcError) -> Exception:
        if exc.code is StatusCode.UNAVAILABLE:
            return EngineUnavailable(
                f"the meshkit registry at {self.target} is unreachable ({exc.message}); "
                "start one with: meshkit registry --port PORT"
            )
        if exc.code is StatusCode.DEADLINE_EXCEEDED:
            return LockTimeout(exc.message)
        if exc.code is StatusCode.INVALID_ARGUMENT:
            return BadLockRequest(exc.message)
        return exc

    async def acquire(self, name: str, owner: str, ttl: float, wait: float | None, value: bytes = b"") -> Grant:
        loop = asyncio.get_running_loop()
        sent = loop.time()
        timeout = None if wait is None else wait + CALL_SLACK
        try:
            granted = await self._proxy.with_options(timeout=timeout).acquire(name, owner, ttl, wait, value)
        except RpcError as exc:
            raise self._translate(exc) from None
        except asyncio.CancelledError:
            # The registry may have granted it just now: give it back for this owner.
            task = asyncio.ensure_future(self._quiet_release(name, owner))
            self._releases.add(task)
            task.add_done_callback(self._releases.discard)
            raise
        return Grant(name, owner, granted.token, ttl, sent_at=sent + granted.waited, value=value)

    async def _quiet_release(self, name: str, owner: str) -> None:
        try:
            await self._proxy.release(name, owner)
        except RpcError as exc:
            log.warning("could not give back %r after a cancelled acquire: %s (it expires in its TTL)", name, exc)

    async def renew(self, grant: Grant) -> bool:
        try:
            renewed: bool = await self._proxy.renew(grant.name, grant.owner, grant.ttl)
        except RpcError as exc:
            raise self._translate(exc) from None
        return renewed

    async def release(self, grant: Grant) -> bool:
        try:
            released: bool = await self._proxy.release(grant.name, grant.owner)
        except RpcError as exc:
            raise self._translate(exc) from None
        return released

    async def holder(self, name: str) -> Holder | None:
        try:
            info = await self._proxy.holder(name)
        except RpcError as exc:
            raise self._translate(exc) from None
        return None if info is None else Holder(info.owner, info.value, info.token)

    async def watch(self, name: str) -> AsyncIterator[Holder | None]:
        stream = self._proxy.with_options(timeout=None).watch(name)
        try:
            async for info in stream:
                yield None if info is None else Holder(info.owner, info.value, info.token)
        except RpcError as exc:
            raise self._translate(exc) from None
        finally:
            await stream.aclose()

    async def close(self) -> None:
        if self._releases:
            await asyncio.gather(*self._releases, return_exceptions=True)
        await self._client.close()


def open_builtin(url: BackendURL) -> BuiltinLocks:
    """``meshkit://HOST:PORT[,HOST:PORT…]``: the factory the ``meshkit`` lock and election scheme declares."""
    return BuiltinLocks(url.netloc)
