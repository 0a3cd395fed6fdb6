"""A server checks what a handler returns against its return type: a result the caller's own
type hints would reject is answered INTERNAL, naming the method and the type, and logged."""

from __future__ import annotations

import enum
import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from meshkit import Client, RpcError, Server, Service, StatusCode, rpc
from meshkit.rpc.access_log import access_log
from meshkit.rpc.middleware import Call, Handler


class Colour(enum.StrEnum):
    RED = "red"


class Pair(msgspec.Struct):
    a: int
    b: str


class Other(msgspec.Struct):
    z: int


class Liar(Service, name="liar"):
    def __init__(self) -> None:
        self.value: Any = None

    @rpc
    async def number(self) -> int:
        return self.value  # type: ignore[no-any-return]

    @rpc
    async def ratio(self) -> float:
        return self.value  # type: ignore[no-any-return]

    @rpc
    async def text(self) -> str:
        return self.value  # type: ignore[no-any-return]

    @rpc
    async def nothing(self) -> None:
        return self.value  # type: ignore[no-any-return]

    @rpc
    async def pair(self) -> Pair:
        return self.value  # type: ignore[no-any-return]

    @rpc
    async def maybe(self) -> list[int] | None:
        return self.value  # type: ignore[no-any-return]

    @rpc
    async def anything(self) -> Any:
        return self.value

    @rpc
    async def numbers(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i
        yield self.value

    @rpc
    async def suspended(self) -> int:
        import asyncio

        await asyncio.sleep(0)  # answered from the handler's task, not its eager first step
        return self.value  # type: ignore[no-any-return]


@pytest.fixture
async def liar() -> AsyncIterator[tuple[Liar, Client]]:
    service = Liar()
    async with Server([service], middleware=[]) as server, Client(target=server.address) as client:
        yield service, client


@pytest.mark.parametrize(
    ("method", "value", "type_name"),
    [
        ("number", "seven", "int"),
        ("number", True, "int"),
        ("number", 1.5, "int"),
        ("ratio", "1.5", "float"),
        ("text", 3, "str"),
        ("nothing", 3, "None"),
        ("pair", Other(1), "Pair"),
        ("pair", {"a": 1}, "Pair"),
        ("maybe", ["x"], "list[int] | None"),
        ("suspended", "seven", "int"),
    ],
)
async def test_a_result_of_the_wrong_type_is_internal(
    liar: tuple[Liar, Client], caplog: pytest.LogCaptureFixture, method: str, value: Any, type_name: str
) -> None:
    service, client = liar
    service.value = value
    with caplog.at_level(logging.ERROR, logger="meshkit.server"), pytest.raises(RpcError) as info:
        await client.call("liar", method, {})
    err = info.value
    assert err.code is StatusCode.INTERNAL
    assert f"liar.{method}" in err.message and f"return type {type_name}" in err.message
    assert any(f"liar.{method}" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)


@pytest.mark.parametrize(
    ("method", "value", "expected"),
    [
        ("number", 7, 7),
        ("ratio", 2, 2),  # an int is a fine float
        ("ratio", 2.5, 2.5),
        ("text", Colour.RED, "red"),  # a str subclass, checked the thorough way
        ("nothing", None, None),
        ("pair", Pair(1, "x"), {"a": 1, "b": "x"}),
        ("maybe", None, None),
        ("maybe", [1, 2], [1, 2]),
        ("anything", {"free": ["form"]}, {"free": ["form"]}),
        ("suspended", 7, 7),
    ],
)
async def test_a_result_of_the_declared_type_passes(
    liar: tuple[Liar, Client], method: str, value: Any, expected: Any
) -> None:
    service, client = liar
    service.value = value
    assert await client.call("liar", method, {}) == expected


async def test_a_stream_item_of_the_wrong_type_ends_the_stream_with_internal(liar: tuple[Liar, Client]) -> None:
    service, client = liar
    service.value = "three"
    got: list[int] = []
    with pytest.raises(RpcError) as info:
        async for item in client.stream("liar", "numbers", {"n": 3}):
            got.append(item)
    assert got == [0, 1, 2]
    assert info.value.code is StatusCode.INTERNAL and "liar.numbers" in info.value.message


async def test_json_calls_are_checked_too(liar: tuple[Liar, Client]) -> None:
    service, client = liar
    service.value = "seven"

    class Typed(Service, name="liar"):
        @rpc
        async def number(self) -> Any: ...

    with pytest.raises(RpcError) as info:
        await client.proxy(Typed).with_options(json=True).number()
    assert info.value.code is StatusCode.INTERNAL


@pytest.mark.parametrize("method", ["number", "suspended"])
async def test_middleware_sees_a_wrong_result_as_internal(caplog: pytest.LogCaptureFixture, method: str) -> None:
    # The access log (and any metrics middleware) must count the call as the caller sees it.
    seen: list[StatusCode] = []

    def recording(next_handler: Handler) -> Handler:
        async def handler(call: Call) -> Any:
            try:
                value = await next_handler(call)
            except RpcError as exc:
                seen.append(exc.code)
                raise
            seen.append(StatusCode.OK)
            return value

        return handler

    service = Liar()
    service.value = "seven"
    middleware = [access_log("meshkit.access"), recording]
    async with Server([service], middleware=middleware) as server, Client(target=server.address) as client:
        with caplog.at_level(logging.INFO, logger="meshkit.access"), pytest.raises(RpcError) as info:
            await client.call("liar", method, {})
    assert info.value.code is StatusCode.INTERNAL
    assert seen == [StatusCode.INTERNAL]
    lines = [r.getMessage() for r in caplog.records if r.name == "meshkit.access"]
    assert any(f"liar.{method}" in line and "status=INTERNAL" in line for line in lines), lines


async def test_middleware_sees_a_right_result_as_ok(caplog: pytest.LogCaptureFixture) -> None:
    service = Liar()
    service.value = Pair(1, "x")
    async with Server([service], middleware=[access_log("meshkit.access")]) as server:
        async with Client(target=server.address) as client:
            with caplog.at_level(logging.INFO, logger="meshkit.access"):
                assert await client.call("liar", "pair", {}) == {"a": 1, "b": "x"}
    lines = [r.getMessage() for r in caplog.records if r.name == "meshkit.access"]
    assert any("liar.pair" in line and "status=OK" in line for line in lines), lines
