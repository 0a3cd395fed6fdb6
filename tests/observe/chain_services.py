"""Two services for the cross-process trace test: ``front`` calls ``back`` through a Client made
with the defaults inside its handler, as application code does."""

from __future__ import annotations

import os

from meshkit import Client, Service, rpc


class Back(Service, name="back"):
    @rpc
    async def answer(self, n: int) -> int:
        return n + 1


class Front(Service, name="front"):
    def __init__(self) -> None:
        self._client: Client | None = None

    @rpc
    async def ask(self, n: int) -> int:
        if self._client is None:
            self._client = Client(target=os.environ["BACK_TARGET"])  # the defaults, nothing more
        return await self._client.proxy(Back).answer(n)  # type: ignore[no-any-return]
