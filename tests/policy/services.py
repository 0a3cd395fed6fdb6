"""Services the policy tests call."""

from __future__ import annotations

import asyncio

from meshkit import RpcError, Service, StatusCode, rpc


class Stock(Service, name="stock"):
    def __init__(self) -> None:
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.fail_first = 0  # the first N calls of ``flaky`` fail with UNAVAILABLE
        self.error: StatusCode | None = None  # every call of ``peek`` fails with this
        self.hang: asyncio.Event | None = None  # ``flaky`` waits for this (hedging tests)

    @rpc(fallback="reserve_later")
    async def reserve(self, item: str) -> str:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        return f"reserved {item}"

    async def reserve_later(self, item: str) -> str:
        return f"deferred {item}"

    @rpc
    async def peek(self, item: str) -> str:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise RpcError(self.error, "peek failed on purpose")
        return item

    @rpc(idempotent=True)
    async def flaky(self, item: str) -> str:
        self.calls += 1
        if self.hang is not None:
            await self.hang.wait()
        if self.calls <= self.fail_first:
            raise RpcError(StatusCode.UNAVAILABLE, "flaky failed on purpose")
        return item

    @rpc
    async def unsafe(self, item: str) -> str:
        """Not idempotent: a processed UNAVAILABLE must never be retried."""
        self.calls += 1
        raise RpcError(StatusCode.UNAVAILABLE, "unsafe failed after doing its work")
