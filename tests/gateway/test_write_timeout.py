"""The gateway's ``write_timeout`` cuts off a client that reads nothing of an answer, also when the
connection is already closing with the answer still buffered (a ``connection: close`` answer, or
a kept-alive one after an ``idle_timeout`` shorter than the write timeout); and it never cuts off
a client that keeps reading, however long the whole answer takes.
"""

from __future__ import annotations

import asyncio
import socket

from meshkit import Server
from meshkit.gateway import GatewayApp, GatewayServer, parse
from tests.gateway.services import Order, Orders
from tests.gateway.test_overload import CONFIG


async def _connection_outlives_write_timeout(request_headers: bytes, config_extra: str) -> bool:
    orders = Orders()
    orders.orders.update({i: Order(i, "apple", 1, ["t" * 60]) for i in range(2, 20_000)})  # ~2 MB of JSON
    config = CONFIG.replace("max_requests_in_progress = 2", "write_timeout = 0.5\n" + config_extra) + (
        '[[routes]]\nmethod = "GET"\npath = "/search"\ncall = "orders.search"\npublic = true\n'
    )
    async with Server([orders], middleware=[]) as backend:
        app = GatewayApp(parse(config.format(address=backend.address)))
        async with GatewayServer(app) as gw:
            assert gw._socket is not None
            gw._socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            await loop.sock_connect(sock, ("127.0.0.1", gw.port))
            _reader, writer = await asyncio.open_connection(sock=sock)
            try:
                writer.write(b"GET /search?item=apple&limit=20000 HTTP/1.1\r\nhost: x\r\n" + request_headers + b"\r\n")
                assert gw._server is not None
                connections = gw._server.server_state.connections
                end = loop.time() + 10
                while not connections:
                    assert loop.time() < end, "the connection never arrived"
                    await asyncio.sleep(0.01)
                end = loop.time() + 4  # 8x the write timeout
                while connections and loop.time() < end:
                    await asyncio.sleep(0.02)
                return bool(connections)
            finally:
                writer.transport.abort()  # so the gateway can stop (its shutdown waits on the connection)


async def test_a_connection_close_answer_nobody_reads_is_cut_off_after_the_write_timeout() -> None:
    lingers = await _connection_outlives_write_timeout(b"connection: close\r\n", "")
    assert not lingers, "the connection, its ~2 MB answer unread, outlived write_timeout by far"


async def test_a_kept_alive_answer_nobody_reads_is_cut_off_when_idle_timeout_is_shorter() -> None:
    # The defaults' order: idle_timeout (5 s) < write_timeout (30 s); scaled down here.
    lingers = await _connection_outlives_write_timeout(b"", "idle_timeout = 0.1")
    assert not lingers, "the connection, its ~2 MB answer unread, outlived write_timeout by far"


async def test_a_client_that_reads_steadily_but_slowly_gets_its_whole_answer() -> None:
    # The write timeout measures a stall, not the whole download: a gateway answer is handed to the
    # transport whole, and this client reads all the time, just not the whole answer within
    # write_timeout (2 MB at ~1.3 MB/s against 0.5 s here; at the default 30 s, 2 MB at 64 KB/s, a
    # phone on a poor link). Only clients "that read nothing of an answer" are cut off.
    orders = Orders()
    orders.orders.update({i: Order(i, "apple", 1, ["t" * 60]) for i in range(2, 20_000)})  # ~2 MB of JSON
    config = CONFIG.replace("max_requests_in_progress = 2", "write_timeout = 0.5") + (
        '[[routes]]\nmethod = "GET"\npath = "/search"\ncall = "orders.search"\npublic = true\n'
    )
    async with Server([orders], middleware=[]) as backend:
        app = GatewayApp(parse(config.format(address=backend.address)))
        async with GatewayServer(app) as gw:
            assert gw._socket is not None
            gw._socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            await loop.sock_connect(sock, ("127.0.0.1", gw.port))
            reader, writer = await asyncio.open_connection(sock=sock)
            try:
                writer.write(b"GET /search?item=apple&limit=20000 HTTP/1.1\r\nhost: x\r\n\r\n")
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                assert length > 1_500_000
                received = 0
                end = loop.time() + 20
                while received < length and loop.time() < end:
                    try:
                        chunk = await asyncio.wait_for(reader.read(65536), 5)
                    except ConnectionError:
                        break
                    if not chunk:
                        break
                    received += len(chunk)
                    await asyncio.sleep(0.05)  # the pace of the scenario (never idle for 0.5 s), not a wait
                assert received == length, f"cut off after {received} of {length} bytes while reading all along"
            finally:
                writer.transport.abort()
