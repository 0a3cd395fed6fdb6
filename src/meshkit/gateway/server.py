"""Serving the gateway with uvicorn (httptools parser, uvloop when installed), with the timeouts
a public entry point needs: ``header_timeout`` closes a connection whose request head has not
arrived in time (slowloris: one byte every few seconds holds a connection forever otherwise),
``idle_timeout`` one that stays idle between requests. A request whose client disconnects is
cancelled, and with it the backend call."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from meshkit.errors import MeshkitError
from meshkit.gateway.app import GatewayApp
from meshkit.gateway.config import GatewayConfig, GatewayConfigError, load


class GatewayBindError(MeshkitError, OSError):
    """The gateway cannot listen on ``host:port`` (the port is taken, the address is not this
    machine's, the port needs privileges, the host does not resolve). An ``OSError`` too, with
    the original ``errno``; the message says which address and what to do, in one line."""

    def __init__(self, host: str, port: int, cause: OSError) -> None:
        self.host = host
        self.port = port
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if isinstance(cause, socket.gaierror):
            why = f"cannot resolve host {host!r} ({cause.strerror}); give an IP address or a resolvable name"
        elif cause.errno == errno.EADDRINUSE:
            why = "the port is already in use; choose another with --port (gateway.port), or 0 for any free port"
        elif cause.errno == errno.EADDRNOTAVAIL:
            why = f"{host} is not an address of this machine; use one of its addresses, 127.0.0.1 or 0.0.0.0"
        elif cause.errno == errno.EACCES:
            why = "permission denied (ports below 1024 need privileges); choose another with --port, or 0"
        else:
            why = f"{cause.strerror or cause}"
        self.message = f"gateway cannot listen on {address}: {why}"
        super().__init__(self.message)
        self.errno = cause.errno  # what OSError callers look at (super().__init__ got one argument)
        self.strerror = cause.strerror

    def __str__(self) -> str:  # OSError's would be "[Errno 98] Address already in use"
        return self.message


_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: 77\r\n\r\n"
    b'{"code": "INVALID_ARGUMENT", "message": "request head too large", "request_id": ""}'[:77]
)


def protocol_with_header_timeout(
    seconds: float, max_head: int = 32 * 1024, write_timeout: float = 30.0
) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, closing connections whose request head takes over ``seconds``
    or ``max_head`` bytes (httptools itself has no limit on either), and those whose client reads
    nothing of an answer for ``write_timeout`` seconds (uvicorn would wait on it for ever, holding
    the answer's memory and, on shutdown, the server)."""

    class HeaderTimeoutProtocol(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None
        _write_timer: asyncio.TimerHandle | None = None
        _head_bytes = 0
        _in_head = True
        _cycles: list[Any] | None = None  # this connection's requests not yet answered

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                self._head_bytes += len(data)
                if self._head_bytes > max_head:
                    self._disarm()
                    if not self.transport.is_closing():
                        self.transport.write(_TOO_LARGE)
                        self.transport.close()
                    return
            super().data_received(data)

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            # uvicorn writes a response's head and body separately: with Nagle's algorithm on,
            # the body waits for the client's (delayed, 40 ms) ACK of the head.
            sock = transport.get_extra_info("socket")
            if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._arm()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            if self._head_timer is None:
                self._arm()  # the next request on a kept-alive connection
            self._in_head = True

        def on_headers_complete(self) -> None:
            self._disarm()
            self._in_head = False
            self._head_bytes = 0
            super().on_headers_complete()
            # uvicorn's self.cycle is the newest request, which may be queued behind a running
            # one (pipelining): remember them all.
            cycle = self.cycle
            if cycle is None:  # an upgrade (websocket): not a request of ours
                return
            cycles = self._cycles
            if cycles is None or (len(cycles) == 1 and cycles[0].response_complete):
                self._cycles = [cycle]  # the usual case: one request at a time
            else:
                cycles[:] = [c for c in cycles if not c.response_complete]
                cycles.append(cycle)

        def pause_writing(self) -> None:
            super().pause_writing()
            if self._write_timer is None:
                self._arm_write_timer()

        def resume_writing(self) -> None:
            super().resume_writing()
            if self._write_timer is not None:
                self._write_timer.cancel()
                self._write_timer = None

        def _arm_write_timer(self) -> None:
            left = self.transport.get_write_buffer_size()
            self._write_timer = self.loop.call_later(write_timeout, self._not_reading, left)

        def _not_reading(self, left_before: int) -> None:
            # A client that reads, however slowly, drains the buffer: give it another period.
            # One that read nothing for a whole period is cut off, even when uvicorn has already
            # closed the transport (close() waits for an unread buffer for ever; abort does not).
            self._write_timer = None
            if self.transport.get_write_buffer_size() < left_before:
                self._arm_write_timer()
                return
            self.transport.abort()  # connection_lost follows: its requests are cancelled

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._write_timer is not None:
                self._write_timer.cancel()
                self._write_timer = None
            super().connection_lost(exc)
            # A client that leaves before its answers: stop its requests, and with them the calls
            # to the backend (cancelled there too), instead of working on for nobody until the
            # deadline; a queued one, when it starts, sees the mark and stops at once. uvicorn
            # itself only marks its newest request disconnected.
            for cycle in self._cycles or ():
                if cycle.response_complete:
                    continue
                cycle.scope["meshkit.disconnected"] = True
                cycle.disconnected = True  # uvicorn marks only its newest request
                cycle.message_event.set()
                task = cycle.scope.get("meshkit.task")
                if isinstance(task, asyncio.Task) and not task.done():
                    task.cancel()
            self._cycles = None

        def _arm(self) -> None:
            self._head_timer = self.loop.call_later(seconds, self._too_slow)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _too_slow(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol


class _Uvicorn(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, handle_signals: bool) -> None:
        super().__init__(config)
        self._handle_signals = handle_signals

    def capture_signals(self) -> Any:
        return super().capture_signals() if self._handle_signals else contextlib.nullcontext()


class GatewayServer:
    """Runs a :class:`GatewayApp` under uvicorn on ``host:port`` (port 0: any free port, see
    ``port`` once started)."""

    def __init__(
        self, app: GatewayApp, host: str | None = None, port: int | None = None, *, handle_signals: bool = False
    ) -> None:
        gw = app.config.gateway
        #: Let uvicorn take SIGINT/SIGTERM (``meshkit gateway``); embedded, the caller owns signals.
        self.handle_signals = handle_signals
        self.app = app
        self.host = host if host is not None else gw.host
        self.requested_port = port if port is not None else gw.port
        self.port = 0
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    def uvicorn_config(self) -> uvicorn.Config:
        gw = self.app.config.gateway
        return uvicorn.Config(
            self.app,
            http=protocol_with_header_timeout(gw.header_timeout, gw.max_head_bytes, gw.write_timeout),
            lifespan="on",
            timeout_keep_alive=gw.idle_timeout,  # type: ignore[arg-type]  # a float works: it goes to call_later
            log_level=gw.log_level,
            access_log=False,  # the gateway writes its own (meshkit.gateway.access), with the route and request id
            server_header=False,
            proxy_headers=False,  # X-Forwarded-For is trusted only with gateway.trust_forwarded
            h11_max_incomplete_event_size=16 * 1024,
        )

    async def start(self) -> None:
        """Listen and serve; raises :class:`GatewayBindError` when ``host:port`` cannot be had."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.requested_port))
            sock.listen(1024)
        except OSError as exc:
            sock.close()
            raise GatewayBindError(self.host, self.requested_port, exc) from exc
        sock.setblocking(False)
        self._socket = sock
        self.port = sock.getsockname()[1]
        server = self._server = _Uvicorn(self.uvicorn_config(), self.handle_signals)
        self._task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if self._task.done():
                self._task.result()  # raises why it stopped
                raise RuntimeError("the gateway stopped while starting (see its log)")
            await asyncio.sleep(0.01)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            await self._task
            self._task = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def __aenter__(self) -> GatewayServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def app_from_file(path: str | Path, **kwargs: Any) -> GatewayApp:
    """A gateway app from a TOML config file (paths in it are relative to the file)."""
    config: GatewayConfig = load(path)
    try:
        return GatewayApp(config, base=Path(path).resolve().parent, **kwargs)
    except GatewayConfigError as exc:  # what the file names but cannot be had (a service class, a key)
        raise GatewayConfigError(f"{path}: {exc}") from None
