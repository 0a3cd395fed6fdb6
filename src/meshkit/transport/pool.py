"""Connections to one peer: a small pool of multiplexed connections with reconnect backoff.

One connection carries many concurrent calls, so the pool is small (default 1). A call takes the
usable connection with the fewest calls in flight. A connection that drops is replaced in the
background, on gRPC's backoff schedule while attempts keep failing; while the peer is in backoff,
calls to it fail fast with UNAVAILABLE (marked not-processed) so the client can go elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from meshkit.errors import RpcError, StatusCode
from meshkit.transport.backoff import Backoff
from meshkit.transport.client import ClientConnection

log = logging.getLogger("meshkit.transport")

#: A connection that lived this long counts as healthy: losing it resets the reconnect backoff.
HEALTHY_AFTER = 1.0

Connector = Callable[[Callable[[ClientConnection], None]], Awaitable[ClientConnection]]


class Peer:
    __slots__ = (
        "_backoff",
        "_closed",
        "_connect",
        "_connecting",
        "_last_error",
        "_loop",
        "_retry_at",
        "_retry_timer",
        "_suspect",
        "address",
        "connections",
        "ready",
        "size",
    )

    def __init__(self, address: str, connect: Connector, *, size: int = 1, backoff: Backoff | None = None) -> None:
        if size < 1:
            raise ValueError(f"pool size must be at least 1, got {size}")
        self.address = address
        self.size = size
        self._connect = connect
        self._backoff = backoff or Backoff()
        self.connections: list[ClientConnection] = []
        #: With a pool of one, the connection to use without looking (None: ask ``pick``).
        self.ready: ClientConnection | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._retry_at = 0.0
        self._retry_timer: asyncio.TimerHandle | None = None
        self._last_error: RpcError | None = None
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        #: The last connection went silent (keepalive): a new one carries calls only once the
        #: server has answered a PING on it.
        self._suspect = False

    @property
    def in_flight(self) -> int:
        return sum(c.in_flight for c in self.connections)

    @property
    def available(self) -> bool:
        """Has a usable connection, or may try to make one now."""
        if any(c.usable for c in self.connections):
            return True
        if self._suspect:  # went silent: not until a new connection has answered a PING
            return False
        loop = self._loop
        return loop is None or loop.time() >= self._retry_at

    def pick(self) -> ClientConnection | None:
        """The usable connection with the fewest calls in flight, without waiting."""
        conns = self.connections
        if len(conns) == 1:
            conn = conns[0]
            if conn.usable:
                if self.size > 1 and conn.pending:
                    self._grow()
                return conn
        best: ClientConnection | None = None
        usable = 0
        for conn in conns:
            if conn.usable:
                usable += 1
                if best is None or conn.in_flight < best.in_flight:
                    best = conn
        if usable < self.size and (best is None or best.in_flight > 0):
            self._grow()
        return best

    def _grow(self) -> None:
        """Open one more connection in the background, unless the peer is in backoff."""
        if self._connecting is None and not self._closed:
            loop = self._loop
            if loop is None or loop.time() >= self._retry_at:
                self._spawn_connect()

    async def acquire(self) -> ClientConnection:
        conn = self.pick()
        if conn is not None:
            return conn
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        if self._closed:
            raise RpcError(StatusCode.UNAVAILABLE, "client is closed", not_processed=True)
        if self._connecting is None and loop.time() < self._retry_at:
            last = self._last_error
            if last is not None and isinstance(last.details, dict) and last.details.get("reason") == "not_meshkit":
                raise last  # says all there is to say
            # The reconnect schedule is the pool's business (logged, and in the details for
            # code that wants it), not the caller's: a one-shot caller will never see it.
            raise RpcError(
                StatusCode.UNAVAILABLE,
                f"{self.address} is unreachable: "
                f"{self._last_error.message if self._last_error else 'connection failed'}",
                {"reason": "unreachable", "retry_after": round(self._retry_at - loop.time(), 3)},
                not_processed=True,
            )
        self._spawn_connect()
        connecting = self._connecting
        if connecting is not None:
            # wait() neither raises the connect task's outcome nor cancels it if we are cancelled;
            # a close() that cancels the connect ends up below as UNAVAILABLE.
            await asyncio.wait([connecting])
        conn = self.pick()
        if conn is None:
            raise self._last_error or RpcError(
                StatusCode.UNAVAILABLE, f"no connection to {self.address}", not_processed=True
            )
        return conn

    def _spawn_connect(self) -> None:
        if self._connecting is not None or self._closed:
            return
        loop = self._loop = self._loop or asyncio.get_running_loop()
        self._connecting = loop.create_task(self._connect_once())

    async def _connect_once(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            try:
                conn = await self._connect(self._state_changed)
            except RpcError as exc:
                self._connection_failed(loop, exc)
                return
            except Exception as exc:
                log.exception("connecting to %s failed unexpectedly", self.address)
                self._connection_failed(
                    loop,
                    RpcError(StatusCode.UNAVAILABLE, f"cannot connect to {self.address}: {exc!r}", not_processed=True),
                )
                return
            if self._closed:
                conn.close()
            elif conn.is_closing:
                # Lost before we got here (the peer accepted and hung up): a failed attempt.
                self._connection_failed(
                    loop,
                    conn.loss_error(None)
                    if conn.broken_by is not None
                    else RpcError(StatusCode.UNAVAILABLE, f"{self.address} closed at once"),
                )
            elif self._suspect and not await self._probe(conn):
                conn.close()
                why = "closed it" if conn.is_closing else f"sent no answer within {conn.probe_timeout:g}s"
                self._connection_failed(
                    loop,
                    RpcError(
                        StatusCode.UNAVAILABLE,
                        f"{self.address} went silent; a new connection's PING: the server {why}",
                        not_processed=True,
                    ),
                )
            elif self._closed:
                conn.close()
            else:
                if self._suspect:  # it answered: the server is back, start the schedule over
                    self._suspect = False
                    self._backoff.reset()
                self._last_error = None
                self._retry_at = 0.0
                self.connections.append(conn)
                self._update_ready()
        finally:
            self._connecting = None

    @staticmethod
    async def _probe(conn: ClientConnection) -> bool:
        """``conn.probe``, closing the connection if the wait is cancelled (Peer.close()): it is
        in no list that close() would find."""
        try:
            return await conn.probe(conn.probe_timeout)
        except BaseException:
            conn.close()
            raise

    def _connection_failed(self, loop: asyncio.AbstractEventLoop, exc: RpcError) -> None:
        self._last_error = exc
        delay = self._backoff.next_delay()
        self._retry_at = loop.time() + delay
        log.info("connection to %s failed (%s); next attempt in %.2fs", self.address, exc.message, delay)
        self._schedule_retry(delay)

    def _schedule_retry(self, delay: float) -> None:
        if self._closed or self._loop is None:
            return
        if self._retry_timer is not None:
            self._retry_timer.cancel()
        self._retry_timer = self._loop.call_later(delay, self._retry)

    def _retry(self) -> None:
        self._retry_timer = None
        if not self._closed and not any(c.usable for c in self.connections):
            self._spawn_connect()

    def _update_ready(self) -> None:
        conns = self.connections
        self.ready = conns[0] if self.size == 1 and len(conns) == 1 and conns[0].usable else None

    def _state_changed(self, conn: ClientConnection) -> None:
        """A connection went away or stopped taking calls: drop it and replace it."""
        if conn not in self.connections:
            return  # not taken into the pool (yet): _connect_once decides what its end means
        if conn.is_closing:
            self.connections.remove(conn)
        self._update_ready()
        if self._closed:
            return
        if not conn.is_closing or self._loop is None:
            if not any(c.usable for c in self.connections) and self._loop is not None:
                self._grow()  # a GOAWAY: open a replacement (unless in backoff)
            return
        loop = self._loop
        if conn.foreign:
            # It answered in another protocol: a failed attempt (on the backoff schedule, with
            # what it said), however quickly it answered.
            self._connection_failed(loop, conn.loss_error(None))
            return
        served = conn.heard_any or loop.time() - conn.opened_at >= HEALTHY_AFTER
        if conn.went_silent:
            # Hung, frozen or cut off, not gone: a new connection may well be accepted (by the
            # kernel, or a middlebox) and never answered. Probe before trusting one with calls.
            if served:
                self._backoff.reset()  # this episode starts the schedule over
            self._suspect = True
            if not any(c.usable for c in self.connections):
                self._grow()
        elif served:
            # A connection that talked or served for a while: reconnect at once, start over.
            self._backoff.reset()
            if not any(c.usable for c in self.connections):
                self._grow()
        else:
            # Dropped right after connecting: count it as a failed attempt, so a peer that accepts
            # and hangs up is retried on the backoff schedule, not in a hot loop.
            self._connection_failed(loop, RpcError(StatusCode.UNAVAILABLE, f"{self.address} dropped the connection"))

    async def close(self) -> None:
        self._closed = True
        if self._retry_timer is not None:
            self._retry_timer.cancel()
        if self._connecting is not None:
            self._connecting.cancel()
        self.ready = None
        for conn in list(self.connections):
            conn.close()
        waiters = [c.closed for c in self.connections]
        if waiters:
            await asyncio.wait(waiters, timeout=1.0)
        self.connections.clear()
