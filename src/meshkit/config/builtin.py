"""``meshkit://HOST:PORT[,HOST:PORT…]``: the configuration store of meshkit's built-in registry.

The client of :mod:`meshkit.config.service`. Every call goes to the first registry server of the list
(the ``pick_first`` balancer, as the registry client does) and to the next one only while that
one is unreachable. A watch that loses its registry (a restart, a dropped connection) resumes from the
last revision it delivered, retrying with a growing pause (up to 2 s), so its caller sees no gap;
a registry that came back without those revisions (no ``--config-dir``) says ``Compacted``.
Driver errors become configuration errors here: UNAVAILABLE -> ConfigUnavailable (with how to
start a registry), ABORTED -> Conflict, OUT_OF_RANGE -> Compacted, INVALID_ARGUMENT and
RESOURCE_EXHAUSTED -> BadConfigRequest.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

from meshkit.config.backend import Change, Changes, Entry, Listing
from meshkit.config.service import ConfigService
from meshkit.errors import (
    BadConfigRequest,
    Compacted,
    ConfigError,
    ConfigUnavailable,
    Conflict,
    RpcError,
    StatusCode,
)
from meshkit.rpc.client import Client
from meshkit.schemes import BackendURL
from meshkit.transport.backoff import BackoffPolicy

log = logging.getLogger("meshkit.config")
#: The longest pause between a watch's attempts to reach its registry again.
RESUME_MAX_PAUSE = 2.0

#: Reconnects to a registry that went away are tried at least every second (the default schedule
#: grows to 120 s): a restarted registry is used again within a second, not minutes later.
RECONNECT = BackoffPolicy(initial=0.1, maximum=1.0)


class BuiltinConfig:
    """The configuration store of a meshkit registry server (``meshkit registry``)."""

    def __init__(self, target: str) -> None:
        if not target:
            raise BadConfigRequest("meshkit:// needs HOST:PORT of a registry server (meshkit registry --port PORT)")
        self.target = target
        self._client = Client(target=target, middleware=[], timeout=5.0, balancer="pick_first", backoff=RECONNECT)
        self._proxy: Any = self._client.proxy(ConfigService)
        #: The identity of the store this client last listed (a watch from that listing's
        #: revision must go on in that store, not in one that answered later).
        self._store_id = ""

    def _translate(self, exc: RpcError) -> Exception:
        code = exc.code
        if code is StatusCode.UNAVAILABLE and isinstance(exc.details, dict) and exc.details.get("reason") == "store":
            return ConfigUnavailable(
                f"the meshkit registry at {self.target} is up, but cannot use its configuration store: {exc.message}"
            )
        if code is StatusCode.UNAVAILABLE:
            return ConfigUnavailable(
                f"the meshkit registry at {self.target} is unreachable ({exc.message}); "
                "start one with: meshkit registry --port PORT"
            )
        if code is StatusCode.ABORTED:
            current = exc.details.get("current", 0) if isinstance(exc.details, dict) else 0
            return Conflict(exc.message, current=int(current))
        if code is StatusCode.OUT_OF_RANGE:
            return Compacted(exc.message)
        if code in (StatusCode.INVALID_ARGUMENT, StatusCode.RESOURCE_EXHAUSTED):
            return BadConfigRequest(exc.message, code=code)
        # DEADLINE_EXCEEDED, CANCELLED, INTERNAL...: the call's outcome is unknown (a write may
        # have been made); still a ConfigError, with the registry's code.
        return ConfigError(f"the meshkit registry at {self.target} did not complete the call: {exc}", code=code)

    async def _call(self, method: str, *args: Any) -> Any:
        try:
            return await getattr(self._proxy, method)(*args)
        except RpcError as exc:
            raise self._translate(exc) from None

    async def get(self, key: str) -> Entry | None:
        found = await self._call("get", key)
        return None if found is None else Entry(found.key, found.value, found.revision)

    async def put(self, key: str, value: bytes, expect: int | None) -> int:
        revision: int = await self._call("put", key, value, expect)
        return revision

    async def delete(self, key: str, expect: int | None) -> int | None:
        revision: int | None = await self._call("delete", key, expect)
        return revision

    async def list(self, prefix: str) -> Listing:
        found = await self._call("list", prefix)
        if found.store:
            self._store_id = found.store  # the store a watch from this listing belongs to
        return Listing([Entry(e.key, e.value, e.revision) for e in found.entries], found.revision)

    async def history(self, key: str) -> Changes:
        return [Change(c.key, c.value, c.revision) for c in await self._call("history", key)]

    async def watch(self, prefix: str, since: int) -> AsyncIterator[Change]:
        seen = since
        pause = 0.05
        store = self._store_id  # the store the revisions belong to: the one last listed, if any
        while True:
            try:
                if not store:
                    store = await self._proxy.identity()
                async for info in self._proxy.with_options(timeout=None).watch(prefix, seen, store):
                    pause = 0.05
                    seen = info.revision
                    yield Change(info.key, info.value, info.revision)
                raise RpcError(StatusCode.UNAVAILABLE, "the registry ended the watch")
            except RpcError as exc:
                error = self._translate(exc)
                if not isinstance(error, ConfigUnavailable):
                    raise error from None
                log.warning("config watch of %r lost its registry (%s); resuming after revision %d", prefix, exc, seen)
            await asyncio.sleep(pause)
            pause = min(pause * 2, RESUME_MAX_PAUSE)

    async def close(self) -> None:
        await self._client.close()


def open_builtin(url: BackendURL) -> BuiltinConfig:
    """``meshkit://HOST:PORT[,HOST:PORT…]``."""
    return BuiltinConfig(url.netloc)
