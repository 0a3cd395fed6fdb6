"""Hostile bytes against a server process: malformed and oversized frames, a length prefix of
2^31, truncated frames, msgpack maps claiming 10^9 entries, slowloris connections and clients
that never read. The server's memory stays bounded, a well-behaved client is unaffected, and the
server itself closes a connection that sends an oversized frame at once, and one that sends part of
a frame and falls silent or trickles a frame it never finishes (slowloris) within its keepalive's
interval + timeout."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from meshkit import Client, Server
from meshkit.protocol.frames import HEADER, FrameType, encode_frame
from meshkit.protocol.keepalive import KeepaliveConfig
from meshkit.protocol.metadata import encode_metadata
from meshkit.serde import msgpack_encode
from meshkit.testing import service_process
from tests.faults.conftest import ROOT, LoopLag, Reliability
from tests.helpers import CHILD_PYTHONPATH
from tests.rpc.services import Greeter

GREETER = "tests.rpc.services:Greeter"


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _request(method: str, args: dict[str, object], sid: int = 1) -> bytes:
    md = encode_metadata({"service": "greeter", "method": method})
    return encode_frame(FrameType.REQUEST, sid, msgpack_encode(args), md)


ATTACKS: dict[str, bytes] = {
    "length prefix 2^31": HEADER.pack(b"MK", 1, 1, 0, 0, 1, 2**31),
    "metadata length over the limit": HEADER.pack(b"MK", 1, 1, 0, 0xFFFF, 1, 0) + b"\x00" * 100,
    "truncated frame, then close": _request("hello", {"name": "x" * 1000})[:40],
    "map claiming 10^9 entries (metadata)": encode_frame(FrameType.REQUEST, 1, b"", b"\xdf" + struct.pack(">I", 10**9)),
    "map claiming 10^9 entries (body)": encode_frame(
        FrameType.REQUEST,
        1,
        b"\xdf" + struct.pack(">I", 10**9),
        encode_metadata({"service": "greeter", "method": "hello"}),
    ),
    "array claiming 10^9 items": encode_frame(
        FrameType.REQUEST,
        1,
        b"\xdd" + struct.pack(">I", 10**9),
        encode_metadata({"service": "greeter", "method": "hello"}),
    ),
    "garbage": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 10,
}


async def _attack_once(port: int, data: bytes) -> None:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(data)
        await writer.drain()
        writer.close()
    except OSError:
        pass


async def _slowloris(port: int, stop: asyncio.Event) -> None:
    """One byte of a frame header at a time, never finishing it."""
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        frame = _request("hello", {"name": "slow"})
        for byte in frame[:15]:
            if stop.is_set():
                break
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.2)
        writer.close()
    except OSError:
        pass


def _never_reads(port: int) -> socket.socket:
    """Sends 1,000 requests for 100 kB answers and never reads one."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    frames = b"".join(_request("big", {"size": 100_000}, sid=i + 1) for i in range(1000))
    sent = 0
    while sent < len(frames):
        try:
            sent += sock.send(frames[sent : sent + 65536])
        except BlockingIOError:
            break
    return sock


async def test_hostile_bytes_leave_memory_bounded_and_other_clients_served(reliability: Reliability) -> None:
    with service_process(GREETER, env={"PYTHONPATH": CHILD_PYTHONPATH}, cwd=str(ROOT)) as srv:
        port = int(srv.address.rsplit(":", 1)[1])
        async with Client(target=srv.address, middleware=[], timeout=5) as good:
            greeter = good.proxy(Greeter)
            assert await greeter.hello("warm") == "hello warm"
            baseline = _rss_mib(srv.pid)
            peak = baseline
            stop = asyncio.Event()
            ok = failed = 0

            async def well_behaved() -> None:
                nonlocal ok, failed
                while not stop.is_set():
                    try:
                        assert await greeter.hello("ann") == "hello ann"
                        ok += 1
                    except Exception:
                        failed += 1

            good_task = asyncio.create_task(well_behaved())
            slow = [asyncio.create_task(_slowloris(port, stop)) for _ in range(100)]
            readers = [_never_reads(port) for _ in range(5)]
            attacks = 0
            for _ in range(20):
                await asyncio.gather(*(_attack_once(port, data) for data in ATTACKS.values()))
                attacks += len(ATTACKS)
                peak = max(peak, _rss_mib(srv.pid))
                await asyncio.sleep(0.1)  # pacing: the attack lasts ~2 s, with the slowloris going on
            peak = max(peak, _rss_mib(srv.pid))
            stop.set()
            await asyncio.gather(*slow)
            await good_task
            for sock in readers:
                sock.close()
            after = await greeter.hello("after")
    growth = peak - baseline
    reliability.record(
        "malformed, oversized and slow input",
        f"{attacks} hostile connections ({len(ATTACKS)} kinds: 2^31 length prefix, 10^9-entry maps and arrays, "
        "truncated frames, oversized metadata, garbage), 100 slowloris connections, 5 clients that never "
        "read (100 MB of answers asked)",
        "server memory bounded; a well-behaved client unaffected",
        f"server RSS {baseline:.0f} MiB -> peak {peak:.0f} MiB (+{growth:.0f}); good client {ok} ok, {failed} failed",
    )
    assert after == "hello after"
    assert failed == 0 and ok > 0
    assert growth < 64


KEEPALIVE = KeepaliveConfig(interval=0.5, timeout=0.5)
#: A connection that never sent a whole frame is closed interval + timeout after it opened (a
#: PING unanswered), plus the event loop's lag and 0.1 s for the close to reach the client.
PARTIAL_BOUND = KEEPALIVE.interval + KEEPALIVE.timeout + 0.1
#: An oversized frame is refused on its header: the connection closes at once.
OVERSIZED_BOUND = 0.2


async def _closed_by_server(port: int, send: bytes, trickle: bool) -> float:
    """Seconds until the server closes a connection that sent ``send`` (at once, or one byte
    every 50 ms, never finishing) and never closed its side."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    opened = loop.time()

    async def dribble() -> None:
        for byte in send:
            writer.write(bytes([byte]))
            await asyncio.sleep(0.05)  # pacing: the attack's rate, not a wait for an outcome
        await asyncio.Event().wait()  # ...and then hold the connection open

    sender = asyncio.create_task(dribble()) if trickle else None
    if sender is None:
        writer.write(send)
    try:
        async with asyncio.timeout(10):
            while await reader.read(65536):  # answers (an error frame) until the server closes
                pass
    except ConnectionResetError:
        pass  # an abort: closed too
    finally:
        closed = loop.time()
        if sender is not None:
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
        writer.close()
    return closed - opened


@pytest.mark.parametrize(
    ("send", "trickle", "bound"),
    [
        (HEADER.pack(b"MK", 1, 1, 0, 0, 1, 2**31), False, OVERSIZED_BOUND),
        (_request("hello", {"name": "x" * 1000})[:40], False, PARTIAL_BOUND),
        (_request("hello", {"name": "x" * 1000}), True, PARTIAL_BOUND),
    ],
    ids=["oversized frame", "truncated frame, then silent", "slowloris"],
)
async def test_the_server_closes_a_hostile_connection_within_its_timeouts(
    send: bytes, trickle: bool, bound: float
) -> None:
    async with Server([Greeter()], middleware=[], keepalive=KEEPALIVE) as srv:
        with LoopLag() as lag:
            took = await _closed_by_server(srv.port, send, trickle)
        assert took <= bound + lag.worst, (took, lag.worst)
        if bound is PARTIAL_BOUND:  # and not before the peer had its keepalive's worth of time
            assert took >= KEEPALIVE.interval + KEEPALIVE.timeout, took
        async with Client(target=srv.address, middleware=[]) as good:  # the server still serves
            assert await good.proxy(Greeter).hello("ann") == "hello ann"
