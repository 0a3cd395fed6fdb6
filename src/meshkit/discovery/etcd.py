"""``etcd://h1:2379,h2:2379[/prefix]``: real etcd v3 through its JSON gateway (CP, Raft).

Each instance is a key ``{prefix}/{service}/{id}`` attached to its own lease; a task renews the
lease every TTL/3 and, if etcd says the lease is gone (we were cut off longer than the TTL),
grants a new one and writes the key again. A crashed or frozen process stops renewing and etcd
deletes its key when the lease expires: no server-side eviction logic, no stale entries.

A watch lists the prefix, then streams changes from the revision after that list; if etcd has
compacted past it, the watch lists again. Endpoints are tried in order, so a dead member fails
over to the next. CP means a partitioned minority refuses writes and reads rather than serving
stale data; clients keep their last known instances meanwhile (see meshkit.rpc.endpoints).

The HTTP client (httpx) is imported here only: ``pip install meshkit[etcd]``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import msgspec

from meshkit.discovery.etcd_http import EtcdError, EtcdHTTP
from meshkit.discovery.etcd_http import b64 as _b64
from meshkit.discovery.etcd_http import prefix_end as _prefix_end
from meshkit.discovery.etcd_http import unb64 as _unb64
from meshkit.discovery.instance import Instance

if TYPE_CHECKING:
    from meshkit.discovery.backends import RegistryURL
    from meshkit.discovery.registry import Registry

log = logging.getLogger("meshkit.discovery.etcd")

DEFAULT_PREFIX = "/meshkit/services"
DEFAULT_TTL = 10


_decode_instance = msgspec.json.Decoder(Instance).decode
_encode = msgspec.json.Encoder().encode


class EtcdRegistry:
    #: etcd keeps its keys and leases through restarts (Raft log, snapshots): CP, not forgetful.
    forgets_on_restart: bool = False

    def __init__(self, endpoints: str, prefix: str = DEFAULT_PREFIX, ttl: int = DEFAULT_TTL) -> None:
        self._etcd = EtcdHTTP(endpoints, what="the etcd:// registry")
        self._prefix = prefix.rstrip("/") or DEFAULT_PREFIX
        self.ttl = max(2, int(ttl))
        self._leases: dict[str, tuple[Instance, int]] = {}
        self._keepalive: asyncio.Task[None] | None = None

    def _key(self, service: str, instance_id: str = "") -> str:
        return f"{self._prefix}/{service}/{instance_id}"

    async def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._etcd.post(path, body)

    # -- registration ------------------------------------------------------------------------
    async def _grant_and_put(self, instance: Instance) -> int:
        lease = int((await self._post("lease/grant", {"TTL": self.ttl}))["ID"])
        await self._post(
            "kv/put",
            {
                "key": _b64(self._key(instance.service, instance.id)),
                "value": _b64(_encode(instance).decode()),
                "lease": lease,
            },
        )
        return lease

    async def register(self, instance: Instance) -> None:
        lease = await self._grant_and_put(instance)
        self._leases[instance.id] = (instance, lease)
        if self._keepalive is None:
            self._keepalive = asyncio.get_running_loop().create_task(self._keep_alive())

    async def deregister(self, instance: Instance) -> None:
        entry = self._leases.pop(instance.id, None)
        if entry is not None:
            await self._post("lease/revoke", {"ID": entry[1]})  # deletes the key with it

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            for instance_id, (instance, lease) in list(self._leases.items()):
                try:
                    result = (await self._post("lease/keepalive", {"ID": lease})).get("result", {})
                    if int(result.get("TTL", 0)) <= 0:
                        log.warning("etcd lease of %s/%s expired; registering again", instance.service, instance_id)
                        if instance_id in self._leases:
                            self._leases[instance_id] = (instance, await self._grant_and_put(instance))
                except EtcdError as exc:
                    log.warning("etcd keepalive failed: %s; retrying in %.1fs", exc, self.ttl / 3)

    # -- discovery ---------------------------------------------------------------------------
    async def _list(self, service: str) -> tuple[dict[str, Instance], int]:
        prefix = self._key(service)
        data = await self._post("kv/range", {"key": _b64(prefix), "range_end": _prefix_end(prefix)})
        found = {}
        for kv in data.get("kvs", []):
            instance = _decode_instance(_unb64(kv["value"]))
            found[instance.id] = instance
        return found, int(data["header"]["revision"])

    async def resolve(self, service: str) -> list[Instance]:
        found, _ = await self._list(service)
        return sorted(found.values(), key=lambda i: i.id)

    def watch(self, service: str) -> EtcdWatcher:
        return EtcdWatcher(self, service)

    async def close(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            await asyncio.gather(self._keepalive, return_exceptions=True)
        await self._etcd.aclose()


def open_etcd(url: RegistryURL) -> Registry:
    """``etcd://h1:2379,h2:2379[/prefix][?ttl=SECONDS]``; etcd leases are whole seconds."""
    return EtcdRegistry(url.netloc, prefix=url.path or DEFAULT_PREFIX, ttl=int(url.number("ttl", DEFAULT_TTL)))


class EtcdWatcher:
    def __init__(self, registry: EtcdRegistry, service: str) -> None:
        self._registry = registry
        self._service = service
        self._closed = False
        self._response: Any = None

    def __aiter__(self) -> AsyncIterator[list[Instance]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[list[Instance]]:
        reg = self._registry
        prefix = reg._key(self._service)
        while not self._closed:
            current, revision = await reg._list(self._service)
            yield sorted(current.values(), key=lambda i: i.id)
            body = {
                "create_request": {
                    "key": _b64(prefix),
                    "range_end": _prefix_end(prefix),
                    "start_revision": revision + 1,
                }
            }
            async with reg._etcd.stream("watch", body) as messages:
                self._response = messages
                relist = False
                async for result in messages:
                    if result.get("compact_revision") or result.get("canceled"):
                        relist = True  # history gone: list again from scratch
                        break
                    changed = False
                    for event in result.get("events", []):
                        kv = event["kv"]
                        instance_id = _unb64(kv["key"]).decode().rsplit("/", 1)[-1]
                        if event.get("type") == "DELETE":
                            changed |= current.pop(instance_id, None) is not None
                        else:
                            current[instance_id] = _decode_instance(_unb64(kv["value"]))
                            changed = True
                    if changed:
                        yield sorted(current.values(), key=lambda i: i.id)
                if not relist and not self._closed:
                    raise EtcdError("etcd closed the watch stream")

    async def close(self) -> None:
        self._closed = True
        if self._response is not None:
            await self._response.aclose()
