"""A token bucket shared by every process through real Redis, with a local fallback.

The refill-and-take runs as one Lua script (``token_bucket.lua``), atomic on the Redis server and
timed by the server's clock. While Redis is unreachable, decisions fall back to a local bucket
with the same rate divided by ``fallback_share`` (roughly this process's share of the fleet), and
Redis is tried again after ``retry_every`` seconds; when it answers, it is authoritative again.
Fails open only as far as the local bucket allows: an outage never turns into "no limit".

Connecting belongs before the first decision, not inside it: :meth:`RedisLink.connect` opens a
connection and loads the script (``Policy.start()`` calls it, bounded), so a call admitted by the
shedder never holds its slot while redis-py connects, and a Redis that is down at start sends
every bucket to its local fallback at once. (No asyncio here: bounding the wait is the caller's.)

The Redis client (redis-py) is imported here only: ``pip install meshkit[redis]``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from importlib import resources
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from meshkit.resilience.token_bucket import TokenBucket

log = logging.getLogger("meshkit.resilience.redis")

SCRIPT = resources.files("meshkit.resilience").joinpath("token_bucket.lua").read_text()
#: How long connecting (at start, or before a client's first shared call) may take before the
#: local buckets decide instead: long enough for a remote Redis, short enough not to stall a start.
#: Clients made by :meth:`RedisLink.from_url` use it as their socket connect timeout too, so a
#: retry after an outage never waits longer.
CONNECT_TIMEOUT = 1.0


def redact(url: str) -> str:
    """``url`` without its password, fit for a log line."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class RedisLink:
    """The Redis client that every shared bucket of a policy uses, and whether Redis answers.

    One per policy, so an outage seen by one bucket (or at start) sends all of them to their local
    fallback at once, and one call per ``retry_every``, not one per bucket or per call, tries again.
    """

    def __init__(
        self,
        redis: Any,
        *,
        url: str | None = None,
        retry_every: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        owned: bool = False,
    ) -> None:
        self.redis = redis
        self.url = redact(url) if url is not None else repr(redis)
        self.script = redis.register_script(SCRIPT)
        self.retry_every = retry_every
        self.clock = clock
        #: Redis did not answer the last attempt: buckets decide locally until ``retry_every`` passed.
        self.down = False
        #: Redis was tried (a connect, or a decision), whatever the outcome; ``close()`` resets it.
        self.started = False
        self._owned = owned
        self._retry_at = 0.0

    @classmethod
    def from_url(
        cls, url: str, *, connect_timeout: float = CONNECT_TIMEOUT, retry_every: float = 1.0, **kwargs: Any
    ) -> RedisLink:
        """A link with its own client for ``url`` (this imports redis-py; nothing connects yet).
        Raises ImportError when redis-py is not installed."""
        import redis.asyncio as aioredis

        client = aioredis.from_url(url, socket_connect_timeout=connect_timeout)
        return cls(client, url=url, retry_every=retry_every, owned=True, **kwargs)

    async def connect(self) -> bool:
        """Open a connection and load the script. False if Redis did not answer: the buckets then
        decide locally at once and Redis is tried after ``retry_every``. The caller bounds the
        wait (a timeout cancels this; it then reports it with :meth:`failed`)."""
        try:
            await self.redis.script_load(SCRIPT)  # leaves its connection in the pool
        except Exception as exc:  # noqa: BLE001 - any failure means: decide locally for a while
            self.failed(exc)
            return False
        self._answered()
        return True

    async def close(self) -> None:
        """Close the connections of a client this link made (it reconnects if used again)."""
        self.started = False
        if self._owned:
            await self.redis.aclose()

    async def take(self, key: str, rate: float, burst: float, tokens: float) -> tuple[bool, float] | None:
        """(allowed, retry_after_seconds) from Redis, or None when Redis is down and the caller
        decides locally."""
        if self.down:
            now = self.clock()
            if now < self._retry_at:
                return None
            self._retry_at = now + self.retry_every  # this call tries; the others decide locally meanwhile
        try:
            allowed, retry_us = await self.script(keys=[key], args=[rate, burst, tokens])
        except Exception as exc:  # noqa: BLE001 - any failure means: decide locally for a while
            self.failed(exc)
            return None
        self._answered()
        return bool(allowed), int(retry_us) / 1_000_000

    def failed(self, exc: BaseException) -> None:
        """Redis did not answer: decide locally until ``retry_every`` has passed (warned once
        per outage, with the URL)."""
        self.started = True
        self._retry_at = self.clock() + self.retry_every
        if not self.down:
            log.warning(
                "Redis at %s is unreachable (%s): shared limits are decided by this process's local bucket "
                "until it answers again (tried every %gs)",
                self.url,
                str(exc) or type(exc).__name__,
                self.retry_every,
            )
        self.down = True

    def _answered(self) -> None:
        self.started = True
        if self.down:
            log.info("Redis at %s answers again: shared limits are decided there again", self.url)
        self.down = False


class RedisTokenBucket:
    """One shared limit: Redis decides through ``link``; while it is down, a local bucket of
    ``rate / fallback_share`` does."""

    def __init__(self, link: RedisLink, key: str, rate: float, burst: float, *, fallback_share: float = 1.0) -> None:
        self._link = link
        self.key = key
        self.rate = rate
        self.burst = burst
        self._local = TokenBucket(max(rate / fallback_share, 1e-9), max(1.0, burst / fallback_share), link.clock())

    @property
    def using_fallback(self) -> bool:
        return self._link.down

    async def try_acquire(self, tokens: float = 1.0) -> tuple[bool, float]:
        """(allowed, retry_after_seconds), from Redis when it answers, else from the local bucket."""
        decided = await self._link.take(self.key, self.rate, self.burst, tokens)
        if decided is not None:
            return decided
        return self._local.try_acquire(self._link.clock(), tokens)
