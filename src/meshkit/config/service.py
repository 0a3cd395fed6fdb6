"""The configuration service meshkit's built-in registry serves, reachable over meshkit RPC.

``meshkit registry`` adds :class:`ConfigService` to its server, so a system that runs the built-in
registry has a configuration store without another engine: ``ConfigStore("meshkit://HOST:PORT")``
(:mod:`meshkit.config.builtin` is the client). The store is a :mod:`meshkit.config.file` journal
when the registry is given ``--config-dir`` (a restart keeps every revision), else the registry
process's memory (a restart loses it; watchers are told so with ``Compacted``). Requests are
checked here as the front checks them, since any RPC client can call.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec

from meshkit.config.backend import Change, Entry
from meshkit.config.file import FileConfig
from meshkit.config.keys import MAX_VALUE, check_key, check_prefix, check_revision, check_value
from meshkit.config.memory import MemoryConfig
from meshkit.errors import Compacted
from meshkit.rpc.service import Service, rpc

#: The service's name on the wire (and in the registry server's routes).
SERVICE_NAME = "meshkit.config"


class EntryInfo(msgspec.Struct):
    key: str
    value: bytes
    revision: int


class ChangeInfo(msgspec.Struct):
    key: str
    value: bytes | None
    revision: int


#: (An alias: the service's ``list`` method hides the builtin inside the class.)
ChangeInfos = list[ChangeInfo]


class ListingInfo(msgspec.Struct):
    entries: list[EntryInfo]
    revision: int
    #: The identity of the store listed: a watch from ``revision`` must resume on this store only.
    store: str = ""


def _change(change: Change) -> ChangeInfo:
    return ChangeInfo(change.key, change.value, change.revision)


class ConfigService(Service, name=SERVICE_NAME):
    """A configuration store (a directory's journal, or memory) for meshkit:// clients."""

    def __init__(self, directory: str | Path | None = None, *, max_value: int = MAX_VALUE) -> None:
        self.store: FileConfig | MemoryConfig = (
            FileConfig(directory) if directory is not None else MemoryConfig(f"config-service-{uuid.uuid4().hex}")
        )
        self.max_value = max_value

    @rpc(idempotent=True)
    async def identity(self) -> str:
        """Which store this is: a watch checks it when it resumes, so that it never goes on in
        another store's history (a registry restarted without its journal, another registry)."""
        return self.store.store_id

    @rpc(idempotent=True)
    async def get(self, key: str) -> EntryInfo | None:
        entry: Entry | None = await self.store.get(check_key(key))
        return None if entry is None else EntryInfo(entry.key, entry.value, entry.revision)

    @rpc
    async def put(self, key: str, value: bytes, expect: int | None = None) -> int:
        key = check_key(key)
        return await self.store.put(key, check_value(key, value, self.max_value), check_revision("expect", expect))

    @rpc
    async def delete(self, key: str, expect: int | None = None) -> int | None:
        return await self.store.delete(check_key(key), check_revision("expect", expect))

    @rpc(idempotent=True)
    async def list(self, prefix: str = "") -> ListingInfo:
        listing = await self.store.list(check_prefix(prefix))
        entries = [EntryInfo(e.key, e.value, e.revision) for e in listing]
        return ListingInfo(entries, listing.revision, self.store.store_id)

    @rpc(idempotent=True)
    async def history(self, key: str) -> ChangeInfos:
        return [_change(c) for c in await self.store.history(check_key(key))]

    @rpc
    async def watch(self, prefix: str, since: int, store: str = "") -> AsyncIterator[ChangeInfo]:
        """Every change under ``prefix`` after ``since``, for as long as the caller listens;
        ``store``: the identity the caller's revisions belong to (Compacted if it is not ours)."""
        start = check_revision("since", since, allow_none=False)
        assert start is not None
        if store and store != self.store.store_id:
            raise Compacted(
                "this registry's configuration store is not the one the watch began on (the registry "
                "restarted without --config-dir, or the watch failed over to another registry); list "
                "again and watch from the listing's revision"
            )
        async for change in self.store.watch(check_prefix(prefix), start):
            yield _change(change)
