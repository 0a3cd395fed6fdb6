"""A Redis hash as a fenced resource: writes carry the writer's fencing token, stale ones are refused.

A lease can end without its holder noticing (a GC pause, a SIGSTOP, a partition longer than the
TTL); the next holder then has a strictly greater token. The resource is what must refuse the old
holder's late writes, so the check runs where the data is, atomically with the write
(``lua/fence.lua``): the hash keeps the highest token that wrote it in a field (``fence`` unless
told otherwise), and a write whose token is lower than that changes nothing::

    fence = RedisFence(client)              # a redis.asyncio.Redis of the data, not of the locks
    async with locks.lock("stock:apple", ttl=10.0) as held:
        if not await fence.write("stock:apple", held.token, {"count": 41}):
            ...                             # a later holder wrote already: this lease is over

The same holder writes as often as it likes with its token (equal tokens pass). The client is the
caller's (any redis-py asyncio client; nothing is imported here), and its errors are its own: the
resource is the application's, not the lock engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from typing import Any

FENCE = resources.files("meshkit.coord").joinpath("lua", "fence.lua").read_text()


class RedisFence:
    """Fenced writes to Redis hashes through ``client`` (a ``redis.asyncio.Redis``)."""

    def __init__(self, client: Any, *, field: str = "fence") -> None:
        self.field = field
        self._script = client.register_script(FENCE)

    async def write(self, key: str, token: int, mapping: Mapping[str, Any]) -> bool:
        """Set ``mapping``'s fields of the hash ``key`` and store ``token`` as its fence, if no
        greater token wrote it before. False: a later holder did; nothing was written."""
        if self.field in mapping:
            raise ValueError(f"field {self.field!r} holds the fencing token; it cannot be written as data")
        if isinstance(token, bool) or not isinstance(token, int):
            raise TypeError(f"a fencing token is an int, got {type(token).__name__}")
        args: list[Any] = [self.field, token]
        for name, value in mapping.items():
            args += (name, value)
        return bool(await self._script(keys=[key], args=args))
