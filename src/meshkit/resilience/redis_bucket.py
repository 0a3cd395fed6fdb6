"""A token bucket shared by every process through real Redis, with a local fallback.

The refill-and-take runs as one Lua script (``token_bucket.lua``), atomic on the Redis server and
timed by the server's clock. While Redis is unreachable, decisions fall back to a local bucket
with the same rate divided by ``fallback_share`` (roughly this process's share of the fleet), and
Redis is tried again after ``retry_every`` seconds; when it answers, it is authoritative again.
Fails open only as far as the local bucket allows: an outage never turns into "no limit".

The Redis client (redis-py) is imported here only: ``pip install meshkit[redis]``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from meshkit.resilience.token_bucket import TokenBucket

log = logging.getLogger("meshkit.resilience.redis")

SCRIPT = resources.files("meshkit.resilience").joinpath("token_bucket.lua").read_text()


class RedisTokenBucket:
    def __init__(
        self,
        redis: Any,
        key: str,
        rate: float,
        burst: float,
        *,
        fallback_share: float = 1.0,
        retry_every: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self.key = key
        self.rate = rate
        self.burst = burst
        self._script = redis.register_script(SCRIPT)
        self._clock = clock
        self._local = TokenBucket(max(rate / fallback_share, 1e-9), max(1.0, burst / fallback_share), clock())
        self._retry_every = retry_every
        self._down_until = 0.0
        self.using_fallback = False

    async def try_acquire(self, tokens: float = 1.0) -> tuple[bool, float]:
        """(allowed, retry_after_seconds), from Redis when it answers, else from the local bucket."""
        now = self._clock()
        if now >= self._down_until:
            try:
                allowed, retry_us = await self._script(keys=[self.key], args=[self.rate, self.burst, tokens])
            except Exception as exc:  # noqa: BLE001 - any Redis failure means: decide locally for a while
                if not self.using_fallback:
                    log.warning("Redis rate limiter unavailable (%s); using the local bucket", exc)
                self.using_fallback = True
                self._down_until = now + self._retry_every
            else:
                if self.using_fallback:
                    log.info("Redis rate limiter is back")
                self.using_fallback = False
                return bool(allowed), int(retry_us) / 1_000_000
        return self._local.try_acquire(now, tokens)
