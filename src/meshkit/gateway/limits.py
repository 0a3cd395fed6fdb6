"""Token buckets per caller (API key or token subject) and per client address.

Local buckets live in a table bounded by ``max_tracked`` (least recently used evicted first: a
flood of spoofed addresses costs old entries, not memory); shared buckets live in Redis
(``meshkit.resilience.redis_bucket``: atomic, server-clocked, local fallback while Redis is down).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from meshkit.gateway.config import Bucket, Limits
from meshkit.resilience.token_bucket import TokenBucket


class _Table:
    def __init__(self, bucket: Bucket, kind: str, max_tracked: int, link: Any, clock: Callable[[], float]) -> None:
        self.bucket = bucket
        self.kind = kind
        self.max_tracked = max_tracked
        self.link = link
        self.clock = clock
        self.entries: OrderedDict[str, Any] = OrderedDict()

    async def take(self, key: str) -> tuple[bool, float]:
        entries = self.entries
        entry = entries.get(key)
        if entry is None:
            if len(entries) >= self.max_tracked:
                entries.popitem(last=False)
            if self.link is not None:
                from meshkit.resilience.redis_bucket import RedisTokenBucket

                entry = RedisTokenBucket(
                    self.link, f"meshkit:gateway:{self.kind}:{key}", self.bucket.rate, self.bucket.size
                )
            else:
                entry = TokenBucket(self.bucket.rate, self.bucket.size, self.clock())
            entries[key] = entry
        else:
            entries.move_to_end(key)
        if isinstance(entry, TokenBucket):
            return entry.try_acquire(self.clock())
        allowed, wait = await entry.try_acquire()
        return bool(allowed), float(wait)


class RateLimits:
    """``per_ip`` is checked before credentials are (it is what slows down guessing them);
    ``per_key`` after, by the proven identity."""

    def __init__(self, config: Limits, clock: Callable[[], float] = time.monotonic, redis: Any = None) -> None:
        if redis is None and config.redis is not None and (config.per_ip or config.per_key):
            import redis.asyncio as aioredis

            redis = aioredis.from_url(config.redis)
        self.redis = redis
        # One link for every bucket: an outage seen by one sends all to their local fallback.
        link = None
        if redis is not None:
            from meshkit.resilience.redis_bucket import RedisLink

            link = RedisLink(redis, url=config.redis, clock=clock)
        self.per_ip = _Table(config.per_ip, "ip", config.max_tracked, link, clock) if config.per_ip else None
        self.per_key = _Table(config.per_key, "key", config.max_tracked, link, clock) if config.per_key else None

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
