"""Shared bits of the in-process micro benchmarks: the echo service and the payload."""

from __future__ import annotations

import msgspec

from meshkit import Service, rpc


class Item(msgspec.Struct):
    id: int
    name: str
    tags: list[str]


ITEM = Item(42, "alice", ["a", "b"])
PAYLOAD = {"id": 42, "name": "alice", "tags": ["a", "b"]}
BATCH = 64


class Echo(Service, name="echo"):
    @rpc
    async def echo(self, item: Item) -> Item:
        return item
