"""TLS and mutual TLS via ssl.SSLContext."""

from __future__ import annotations

import ssl

import pytest
import trustme

from meshkit import Client, RpcError, Server, StatusCode
from tests.rpc.services import Greeter


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _server_ctx(ca: trustme.CA, require_client: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    if require_client:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ca.configure_trust(ctx)
    return ctx


def _client_ctx(ca: trustme.CA | None, cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if ca is not None:
        ca.configure_trust(ctx)
        if cert:
            ca.issue_cert("client@meshkit").configure_cert(ctx)
    return ctx


async def test_tls(ca: trustme.CA) -> None:
    async with Server([Greeter()], ssl=_server_ctx(ca, False), middleware=[]) as srv:
        async with Client(target=srv.address, ssl=_client_ctx(ca, False), server_hostname="localhost") as c:
            assert await c.proxy(Greeter).hello("tls") == "hello tls"


async def test_tls_untrusted_server_is_unavailable(ca: trustme.CA) -> None:
    async with Server([Greeter()], ssl=_server_ctx(ca, False), middleware=[]) as srv:
        async with Client(target=srv.address, ssl=_client_ctx(trustme.CA(), False), server_hostname="localhost") as c:
            with pytest.raises(RpcError) as info:
                await c.proxy(Greeter).hello("x")
            assert info.value.code is StatusCode.UNAVAILABLE
            assert "CERTIFICATE_VERIFY_FAILED" in info.value.message


async def test_mutual_tls(ca: trustme.CA) -> None:
    async with Server([Greeter()], ssl=_server_ctx(ca, True), middleware=[]) as srv:
        async with Client(target=srv.address, ssl=_client_ctx(ca, True), server_hostname="localhost") as c:
            assert await c.proxy(Greeter).hello("mtls") == "hello mtls"
        async with Client(
            target=srv.address, ssl=_client_ctx(ca, False), server_hostname="localhost", connect_timeout=2
        ) as c:
            with pytest.raises(RpcError) as info:
                await c.proxy(Greeter).with_options(timeout=2).hello("no cert")
            assert info.value.code in (StatusCode.UNAVAILABLE, StatusCode.DEADLINE_EXCEEDED)
