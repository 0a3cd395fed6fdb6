"""``meshkit://HOST:PORT[,HOST:PORT…]``: the client side of the built-in registry.

Registration returns a lease that a background task renews every TTL/3; a lease the registry no
longer knows (it restarted, or evicted us during a partition) is registered again. Watches are
server streams; when one breaks, the caller (the client's endpoints) keeps the last snapshot and
re-watches on its backoff schedule.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from meshkit.discovery.backends import RegistryURL
from meshkit.discovery.instance import Instance
from meshkit.discovery.registry import Registry
from meshkit.errors import RpcError
from meshkit.registry.service import DEFAULT_TTL, RegistryService
from meshkit.rpc.client import Client
from meshkit.transport.backoff import BackoffPolicy

log = logging.getLogger("meshkit.registry")


class _StreamWatcher:
    def __init__(self, client: Client, service: str) -> None:
        self._stream = client.proxy(RegistryService).with_options(timeout=None).watch(service)

    def __aiter__(self) -> AsyncIterator[list[Instance]]:
        return self._stream.__aiter__()

    async def close(self) -> None:
        await self._stream.aclose()  # type: ignore[attr-defined]


class BuiltinRegistry:
    #: The registry server keeps its state in memory: restarted, it knows nobody until the
    #: instances' next heartbeats (clients hold what they knew meanwhile: discovery.amnesia).
    forgets_on_restart: bool = True

    def __init__(self, target: str, ttl: float = DEFAULT_TTL) -> None:
        # Several registry servers do not replicate: every call goes to the first one of the list
        # (pick_first; a hash ring with bounded loads would spill concurrent calls to the next),
        # and to the next only while that one is unreachable.
        # Reconnects are tried at least every TTL/3 (not on the default schedule's up to 120 s):
        # after a long registry outage a heartbeat must get through within a TTL of its return,
        # or instances stay missing longer than clients hold them (discovery.amnesia).
        backoff = BackoffPolicy(initial=min(1.0, ttl / 3), maximum=ttl / 3)
        self._client = Client(
            target=target, middleware=[], timeout=max(1.0, ttl / 3), balancer="pick_first", backoff=backoff
        )
        self._proxy = self._client.proxy(RegistryService)
        self.ttl = ttl
        self._leases: dict[str, tuple[Instance, int]] = {}
        self._heartbeat: asyncio.Task[None] | None = None

    async def register(self, instance: Instance) -> None:
        lease = await self._proxy.register(instance, self.ttl)
        self._leases[instance.id] = (instance, lease)
        if self._heartbeat is None:
            self._heartbeat = asyncio.get_running_loop().create_task(self._renew_forever())

    async def deregister(self, instance: Instance) -> None:
        self._leases.pop(instance.id, None)
        await self._proxy.deregister(instance.id)

    async def resolve(self, service: str) -> list[Instance]:
        return await self._proxy.instances(service)

    def watch(self, service: str) -> _StreamWatcher:
        return _StreamWatcher(self._client, service)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            if not self._leases:
                continue
            try:
                unknown = set(await self._proxy.heartbeat([lease for _, lease in self._leases.values()]))
                for instance_id, (instance, lease) in list(self._leases.items()):
                    if lease in unknown:
                        log.warning("registry forgot %s/%s; registering again", instance.service, instance_id)
                        self._leases[instance_id] = (instance, await self._proxy.register(instance, self.ttl))
            except RpcError as exc:
                log.warning("heartbeat to the registry failed: %s; retrying in %.1fs", exc, self.ttl / 3)

    async def close(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        await self._client.close()


def open_builtin(url: RegistryURL) -> Registry:
    """``meshkit://HOST:PORT[,HOST:PORT…][?ttl=SECONDS]``: the factory the ``meshkit`` scheme declares."""
    return BuiltinRegistry(url.netloc, ttl=url.number("ttl", DEFAULT_TTL))
