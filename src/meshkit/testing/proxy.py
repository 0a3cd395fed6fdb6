"""A TCP proxy that injects network faults between a client and a server, in-process.

    async with FaultProxy("127.0.0.1:7001") as proxy:
        client = Client(target=proxy.address)
        proxy.latency(0.075, jitter=0.05)   # every chunk, each way, 25-125 ms late (order kept)
        proxy.blackhole()                   # accepted, read, never forwarded nor answered
        proxy.partition()                   # nothing crosses either way; held until heal()
        proxy.drop(0.5)                     # half the new connections closed at once
        proxy.reset(1.0)                    # every new connection reset (RST)
        proxy.reset_all()                   # reset the connections open now
        proxy.heal()                        # back to a clean wire

Faults apply to bytes from the moment they are set (on open connections too) and are decided
with ``rng`` (pass a seeded ``random.Random`` for a repeatable run). ``stats`` counts what the
proxy did, so a test can assert on it (connections accepted, dropped, reset; bytes each way).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from dataclasses import dataclass, field

_CHUNK = 65536


@dataclass
class ProxyStats:
    accepted: int = 0
    dropped: int = 0
    reset: int = 0
    bytes_up: int = 0  # client -> server, forwarded
    bytes_down: int = 0  # server -> client, forwarded
    discarded: int = 0  # bytes a blackhole swallowed
    open: int = 0


@dataclass(eq=False)  # identity: links live in a set
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[str]] = field(default_factory=list)


class FaultProxy:
    def __init__(
        self, target: str, *, host: str = "127.0.0.1", port: int = 0, rng: random.Random | None = None
    ) -> None:
        target_host, _, target_port = target.rpartition(":")
        self.target = (target_host.strip("[]"), int(target_port))
        self.host = host
        self.requested_port = port
        self.port = 0
        self.rng = rng or random.Random()
        self.stats = ProxyStats()
        self._delay = 0.0
        self._jitter = 0.0
        self._blackhole = False
        self._drop = 0.0
        self._reset = 0.0
        self._healed = asyncio.Event()
        self._healed.set()
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._swallowed: set[_Link] = set()
        self._handlers: set[asyncio.Task[object]] = set()  # one per accepted connection
        self._stopping = False

    # -- faults ---------------------------------------------------------------------------------
    def latency(self, delay: float, jitter: float = 0.0) -> None:
        """Forward every chunk ``delay`` ± ``jitter`` seconds late (never reordered)."""
        if delay < 0 or jitter < 0 or jitter > delay:
            raise ValueError(f"need 0 <= jitter <= delay, got delay={delay}, jitter={jitter}")
        self._delay, self._jitter = delay, jitter

    def blackhole(self) -> None:
        """Accept connections and read them, but forward and answer nothing (bytes discarded)."""
        self._blackhole = True

    def partition(self) -> None:
        """Nothing crosses, either way; bytes are held (as TCP would retransmit them) until heal()."""
        self._healed.clear()

    def drop(self, fraction: float) -> None:
        """Close that fraction of new connections as soon as they are accepted."""
        self._drop = _fraction(fraction)

    def reset(self, fraction: float) -> None:
        """Reset (RST) that fraction of new connections as soon as they are accepted."""
        self._reset = _fraction(fraction)

    def reset_all(self) -> None:
        """Reset every connection open now, both sides."""
        for link in list(self._links):
            self._abort(link)

    def heal(self) -> None:
        """A clean wire again: no latency, blackhole, partition, drops or resets. Connections
        accepted while blackholed have no server behind them: they are reset, so clients
        reconnect."""
        self._delay = self._jitter = 0.0
        self._blackhole = False
        self._drop = self._reset = 0.0
        self._healed.set()
        for link in list(self._swallowed):
            self._abort(link)

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        self._stopping = False
        self._server = await asyncio.start_server(self._accept, self.host, self.requested_port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening, reset every connection and wait until each one's handling has ended
        (including those still connecting upstream or held by a partition)."""
        self._stopping = True  # a connection accepted but not yet handled is reset when it is
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            self._abort(link)
        handlers = [task for task in self._handlers if task is not asyncio.current_task()]
        for task in handlers:
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the wire -------------------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._stopping:
            self._abort(_Link(writer))
            return
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._handle(reader, writer)
        finally:
            self._handlers.discard(task)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.accepted += 1
        link = _Link(writer)
        if self._reset and self.rng.random() < self._reset:
            self.stats.reset += 1
            self._abort(link)
            return
        if self._drop and self.rng.random() < self._drop:
            self.stats.dropped += 1
            writer.close()
            return
        self._links.add(link)
        self.stats.open += 1
        try:
            if self._blackhole:
                self._swallowed.add(link)  # heal() resets it: it has no server behind it
                await self._swallow(reader)
                return
            await self._healed.wait()  # a partition hides new connections from the server too
            try:
                upstream_reader, upstream = await asyncio.open_connection(*self.target)
            except OSError:
                self._abort(link)  # the server is down: the client sees a reset, as without a proxy
                return
            link.server = upstream
            up = asyncio.create_task(self._pump(reader, upstream, "up"))
            down = asyncio.create_task(self._pump(upstream_reader, writer, "down"))
            link.tasks = [up, down]
            pending: set[asyncio.Task[str]] = {up, down}
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if any(task.result() == "reset" for task in done if not task.cancelled()):
                    # One side reset (or broke): so does the other, as it would without a proxy.
                    self._abort(link)
                    for task in pending:
                        task.cancel()
                    await asyncio.gather(*pending, return_exceptions=True)
                    break
        finally:
            for task in link.tasks:  # asyncio.wait does not cancel what it waits for
                task.cancel()
            await asyncio.gather(*link.tasks, return_exceptions=True)
            self._links.discard(link)
            self._swallowed.discard(link)
            self.stats.open -= 1
            for w in (writer, link.server):
                if w is not None:
                    w.close()

    async def _swallow(self, reader: asyncio.StreamReader) -> None:
        try:
            while data := await reader.read(_CHUNK):
                self.stats.discarded += len(data)
        except (ConnectionError, OSError):
            return

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: str) -> str:
        """Forward one direction: "eof" when the sender finished, "reset" when a side broke.

        Reading and writing are separate tasks joined by a queue, so a chunk's delay runs from
        when it arrived, not from when the previous chunk left (delays never add up)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        outcome = ["eof"]

        async def read() -> None:
            last_release = 0.0
            try:
                while data := await reader.read(_CHUNK):
                    if self._blackhole:
                        self.stats.discarded += len(data)
                        continue
                    delay = self._delay
                    if delay and self._jitter:
                        delay += self.rng.uniform(-self._jitter, self._jitter)
                    last_release = max(last_release, loop.time() + delay)  # never reordered
                    queue.put_nowait((last_release, data))
            except (ConnectionError, OSError):
                outcome[0] = "reset"
            queue.put_nowait((0.0, b""))  # the end

        reading = asyncio.create_task(read())
        try:
            while True:
                release, data = await queue.get()
                if not data:
                    break
                wait = release - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._healed.wait()  # a partition holds the bytes until it heals
                if self._blackhole:
                    self.stats.discarded += len(data)
                    continue
                writer.write(data)
                if direction == "up":
                    self.stats.bytes_up += len(data)
                else:
                    self.stats.bytes_down += len(data)
                await writer.drain()
            if outcome[0] == "eof" and writer.can_write_eof():
                writer.write_eof()
            return outcome[0]
        except (ConnectionError, OSError):
            return "reset"
        finally:
            reading.cancel()
            await asyncio.gather(reading, return_exceptions=True)

    def _abort(self, link: _Link) -> None:
        for w in (link.client, link.server):
            if w is None:
                continue
            sock = w.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            w.transport.abort()


def _fraction(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"a fraction is in [0, 1], got {value}")
    return value
