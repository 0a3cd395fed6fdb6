"""Calls without sockets: a client connection wired to a server in the same event loop.

``Client(target=server.address, connector=connect_in_memory(server))`` sends every call through
the real protocol stack (the sans-IO connection on both ends, the server's dispatcher, the
client's channel, middleware and all) but hands the bytes over in memory, one loop iteration
later, in order. Tests get the whole path without ports, kernels or timing noise; the server
must be started (it keeps listening on its port as well).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

from meshkit.errors import RpcError, StatusCode
from meshkit.protocol.limits import Limits
from meshkit.rpc.channel import Connector
from meshkit.rpc.server import Server
from meshkit.transport.base import FrameProtocol
from meshkit.transport.client import OPENING_PING, ClientConnection

_ports = itertools.count(1)


class MemoryTransport(asyncio.Transport):
    """One end of an in-memory pipe: what is written is delivered to the other end's protocol."""

    def __init__(self, loop: asyncio.AbstractEventLoop, name: tuple[str, int]) -> None:
        super().__init__()
        self._loop = loop
        self._name = name
        self.peer: MemoryTransport | None = None
        self.protocol: FrameProtocol | None = None
        self._outbox: list[bytes] = []
        self._closing = False
        self._lost = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        if not self._outbox:
            self._loop.call_soon(self._deliver)
        self._outbox.append(bytes(data))

    def _deliver(self) -> None:
        data, self._outbox = b"".join(self._outbox), []
        peer = self.peer
        if data and peer is not None and not peer._lost and peer.protocol is not None:
            peer.protocol.data_received(data)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        # What was written still arrives; then both ends are lost, as a TCP close would do.
        self._loop.call_soon(self._deliver)
        self._loop.call_soon(self._lose_both)

    def abort(self) -> None:
        self._closing = True
        self._outbox.clear()
        self._loop.call_soon(self._lose_both)

    def _lose_both(self) -> None:
        for end in (self, self.peer):
            if end is not None and not end._lost:
                end._closing = end._lost = True
                if end.protocol is not None:
                    end.protocol.connection_lost(None)

    def is_closing(self) -> bool:
        return self._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._name if name in ("peername", "sockname") else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def connect_in_memory(server: Server) -> Connector:
    """A connector for :class:`~meshkit.Client` (``connector=``) whose connections go to
    ``server`` in memory."""

    async def connect(
        host: str, port: int, limits: Limits, on_state_change: Callable[[ClientConnection], None]
    ) -> ClientConnection:
        if not server.serving:  # as a closed listening socket refuses a connect
            raise RpcError(
                StatusCode.UNAVAILABLE, f"cannot connect to {server.address} in memory: not serving", not_processed=True
            )
        loop = asyncio.get_running_loop()
        number = next(_ports)
        client_end = MemoryTransport(loop, ("memory-server", number))
        server_end = MemoryTransport(loop, ("memory-client", number))
        client_end.peer, server_end.peer = server_end, client_end
        server_conn = server._listener.make_connection()
        client_conn = ClientConnection(loop, limits, None, on_state_change)
        server_end.protocol, client_end.protocol = server_conn, client_conn
        server_conn.connection_made(server_end)
        client_conn.connection_made(client_end)
        client_conn.send(OPENING_PING)
        return client_conn

    return connect
