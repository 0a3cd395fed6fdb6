"""A gateway that cannot listen says so in one typed error: ``GatewayBindError`` (a MeshkitError
and an OSError with the original errno) naming host:port and what to do, and it leaves nothing
open behind it."""

from __future__ import annotations

import errno
import socket

import pytest

from meshkit import MeshkitError
from meshkit.gateway import GatewayApp, GatewayBindError, GatewayServer, parse

CONFIG = """
[gateway]
port = 0
[targets]
orders = "127.0.0.1:1"
[[routes]]
method = "GET"
path = "/x"
call = "orders.get"
public = true
"""


def _app() -> GatewayApp:
    return GatewayApp(parse(CONFIG))


async def test_a_port_in_use_is_a_bind_error_naming_the_address_and_the_way_out() -> None:
    async with GatewayServer(_app(), host="127.0.0.1", port=0) as first:
        second = GatewayServer(_app(), host="127.0.0.1", port=first.port)
        with pytest.raises(GatewayBindError) as raised:
            await second.start()
        error = raised.value
        assert isinstance(error, MeshkitError) and isinstance(error, OSError)
        assert error.errno == errno.EADDRINUSE
        assert (error.host, error.port) == ("127.0.0.1", first.port)
        message = str(error)
        assert f"127.0.0.1:{first.port}" in message and "already in use" in message
        assert "--port" in message and "0 for any free port" in message
        assert "\n" not in message and "Errno" not in message
        assert second._socket is None and second._task is None  # nothing left listening or running
        await second.stop()  # stopping one that never started is harmless


async def test_a_port_taken_by_another_program_is_refused_the_same_way() -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        port = other.getsockname()[1]
        with pytest.raises(GatewayBindError, match=f"127.0.0.1:{port}: the port is already in use"):
            await GatewayServer(_app(), host="127.0.0.1", port=port).start()


async def test_an_address_not_of_this_machine_is_named() -> None:
    # 192.0.2.0/24 is TEST-NET-1: never assigned to an interface.
    with pytest.raises(GatewayBindError, match=r"192\.0\.2\.1:0: 192\.0\.2\.1 is not an address of this machine") as r:
        await GatewayServer(_app(), host="192.0.2.1", port=0).start()
    assert r.value.errno == errno.EADDRNOTAVAIL
