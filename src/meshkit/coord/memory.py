"""``memory://[space]``: locks and elections inside one process, for unit tests and the demo.

It keeps the same contract as the engines (see :mod:`meshkit.coord.backend`): leases expire on
the event loop's clock, tokens grow per name for the life of the process, waiters are served in
the order they asked (FIFO) and a cancelled waiter leaves no trace. Backends opened with the same
``space`` (the URL's host part; empty is a space too) share their locks, like processes sharing an
engine; :func:`reset` forgets every space (tests call it between cases).

What it cannot do is outlive the process: it is no protection between processes.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from meshkit.coord.backend import Grant, Holder
from meshkit.errors import LockTimeout
from meshkit.schemes import BackendURL


@dataclass(slots=True)
class _Name:
    """The state of one name in one space."""

    holder: Holder | None = None
    expires_at: float = 0.0
    fence: int = 0
    waiters: collections.deque[asyncio.Future[None]] = field(default_factory=collections.deque)
    watchers: list[asyncio.Queue[Holder | None]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


_spaces: dict[str, dict[str, _Name]] = {}


def reset() -> None:
    """Forget every lock of every space (between tests)."""
    for names in _spaces.values():
        for state in names.values():
            if state.timer is not None:
                state.timer.cancel()
    _spaces.clear()


class MemoryLocks:
    """Locks and elections of one space of this process."""

    def __init__(
        self, space: str = "", *, clock_tokens: bool = False, clock: Callable[[], float] | None = None
    ) -> None:
        self.space = space
        #: Where leases are measured (the event loop's clock unless a test gives its own).
        self._clock = clock
        self._names = _spaces.setdefault(space, {})
        #: Tokens no lower than the wall clock in microseconds: they keep growing across a restart
        #: of the process that holds this space (meshkit's built-in registry), unless its clock
        #: steps back by more than the restart took.
        self._clock_tokens = clock_tokens

    def _state(self, name: str) -> _Name:
        state = self._names.get(name)
        if state is None:
            state = self._names[name] = _Name()
        return state

    def _expire(self, state: _Name, now: float) -> None:
        """Drop a holder whose lease ran out (checked whenever the name is looked at)."""
        if state.holder is not None and now >= state.expires_at:
            self._set_holder(state, None)

    def _set_holder(self, state: _Name, holder: Holder | None) -> None:
        state.holder = holder
        if state.timer is not None:
            state.timer.cancel()
            state.timer = None
        for queue in state.watchers:
            queue.put_nowait(holder)
        if holder is None:
            self._wake_next(state)

    def _wake_next(self, state: _Name) -> None:
        while state.waiters:
            waiter = state.waiters[0]
            if not waiter.done():
                waiter.set_result(None)
                return
            state.waiters.popleft()

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def _arm_expiry(self, state: _Name, loop: asyncio.AbstractEventLoop) -> None:
        """Wake the waiters when the lease runs out (the timer asks the clock again: with a
        test's clock it may fire at another time, and then does nothing early)."""
        if state.timer is not None:
            state.timer.cancel()
        delay = state.expires_at - self._now()
        state.timer = loop.call_later(max(0.0, delay), self._timer_expired, state)

    def _timer_expired(self, state: _Name) -> None:
        state.timer = None
        self._expire(state, self._now())

    async def acquire(self, name: str, owner: str, ttl: float, wait: float | None, value: bytes = b"") -> Grant:
        loop = asyncio.get_running_loop()
        state = self._state(name)
        deadline = None if wait is None else self._now() + wait
        waiter: asyncio.Future[None] | None = None
        try:
            while True:
                now = self._now()
                self._expire(state, now)
                first = not state.waiters or state.waiters[0] is waiter
                if state.holder is None and first:
                    if waiter is not None:
                        state.waiters.popleft()
                        waiter = None
                    state.fence += 1
                    if self._clock_tokens:
                        state.fence = max(state.fence, time.time_ns() // 1000)
                    state.expires_at = now + ttl
                    self._set_holder(state, Holder(owner, value, state.fence))
                    self._arm_expiry(state, loop)
                    return Grant(name, owner, state.fence, ttl, now, value)
                if deadline is not None and now >= deadline:
                    raise LockTimeout(f"lock {name!r} was not granted within {wait:g} s")
                if waiter is None or waiter.done():
                    if waiter is not None:
                        state.waiters.remove(waiter)
                    waiter = loop.create_future()
                    state.waiters.append(waiter)
                timeout = None if deadline is None else deadline - now
                try:
                    await asyncio.wait_for(asyncio.shield(waiter), timeout)
                except TimeoutError:
                    pass
        finally:
            if waiter is not None:
                # Timed out or cancelled: leave the queue, and pass a wake-up we took on.
                handed = waiter.done() and not waiter.cancelled()
                if waiter in state.waiters:
                    state.waiters.remove(waiter)
                waiter.cancel()
                if handed or (state.holder is None and state.waiters):
                    self._wake_next(state)

    def _ours(self, grant: Grant, now: float) -> _Name | None:
        state = self._names.get(grant.name)
        if state is None:
            return None
        self._expire(state, now)
        holder = state.holder
        if holder is None or holder.owner != grant.owner:
            return None
        return state

    async def renew(self, grant: Grant) -> bool:
        state = self._ours(grant, self._now())
        if state is None:
            return False
        state.expires_at = self._now() + grant.ttl
        self._arm_expiry(state, asyncio.get_running_loop())
        return True

    async def release(self, grant: Grant) -> bool:
        state = self._ours(grant, self._now())
        if state is None:
            return False
        self._set_holder(state, None)
        return True

    async def holder(self, name: str) -> Holder | None:
        state = self._names.get(name)
        if state is None:
            return None
        self._expire(state, self._now())
        return state.holder

    async def watch(self, name: str) -> AsyncIterator[Holder | None]:
        state = self._state(name)
        queue: asyncio.Queue[Holder | None] = asyncio.Queue()
        state.watchers.append(queue)
        try:
            last = await self.holder(name)
            yield last
            while True:
                current = await queue.get()
                if current != last:
                    last = current
                    yield current
        finally:
            state.watchers.remove(queue)

    async def close(self) -> None:
        """Nothing to close: the space outlives this backend (other backends may share it)."""


def open_memory(url: BackendURL) -> MemoryLocks:
    return MemoryLocks(url.netloc)
