"""The admin HTTP port: ``/metrics`` (Prometheus text format), ``/healthz`` (the process and its
event loop answer) and ``/readyz`` (it should get traffic: its servers are started and, when it
has checks, they pass). Plain HTTP/1.1 on asyncio streams, one request per connection: what a
scraper and a load-balancer probe need, with no web framework to install.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger("meshkit.observe")

#: (ready, reasons it is not)
ReadyCheck = Callable[[], tuple[bool, list[str]]]
MAX_REQUEST = 8192
READ_TIMEOUT = 5.0
MAX_CONNECTIONS = 64


class AdminHttp:
    def __init__(self, registry: CollectorRegistry | None = None, ready: ReadyCheck | None = None) -> None:
        self.registry = registry if registry is not None else REGISTRY
        self._ready = ready
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = await asyncio.start_server(self._serve, host, port, limit=MAX_REQUEST)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._slots.locked():  # at most MAX_CONNECTIONS at once: a probe port, not a web server
            writer.close()
            return
        async with self._slots:
            head = b""
            head_only = False
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
                line = head.split(b"\r\n", 1)[0]
                head_only = line.startswith(b"HEAD ")
                status, ctype, body = self.respond(line)
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                status, ctype, body = "400 Bad Request", "text/plain", b"bad request\n"
            except Exception:
                log.exception("admin port: answering %r failed", head[:100])
                status, ctype, body = "500 Internal Server Error", "text/plain", b"internal error\n"
            try:
                writer.write(
                    f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n".encode()
                    + (b"" if head_only else body)  # HEAD: the headers only
                )
                await asyncio.wait_for(writer.drain(), READ_TIMEOUT)
            except (ConnectionError, TimeoutError):
                pass
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError, TimeoutError):
                    await asyncio.wait_for(writer.wait_closed(), READ_TIMEOUT)

    def respond(self, request_line: bytes) -> tuple[str, str, bytes]:
        parts = request_line.decode("latin-1").split()
        if len(parts) != 3:
            return "400 Bad Request", "text/plain", b"bad request line\n"
        method, target, _ = parts
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"only GET\n"
        path = target.split("?", 1)[0]
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self.registry)
        if path == "/healthz":
            return "200 OK", "text/plain", b"ok\n"
        if path == "/readyz":
            ready, reasons = self._ready() if self._ready is not None else (True, [])
            if ready:
                return "200 OK", "text/plain", b"ready\n"
            return "503 Service Unavailable", "text/plain", ("not ready: " + "; ".join(reasons) + "\n").encode()
        return "404 Not Found", "text/plain", b"try /metrics, /healthz or /readyz\n"


def servers_ready(servers: list[Any]) -> ReadyCheck:
    """Ready while every server is started (and so registered, if it has a registry) and its
    health self-checks pass (the ones that take it out of the registry's rotation)."""

    def check() -> tuple[bool, list[str]]:
        reasons = [f"{s.address} is not serving" for s in servers if not s.serving]
        for s in servers:
            reasons.extend(f"{s.address}: {reason}" for reason in s.unhealthy_reasons)
        return not reasons, reasons

    return check
