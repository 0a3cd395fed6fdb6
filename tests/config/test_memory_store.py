"""memory:// keeps the store contract; stores opened on one space share it, other spaces do not."""

from __future__ import annotations

from meshkit.config import ConfigStore
from tests.config.contract import ConfigContract


class TestMemoryStore(ConfigContract):
    def open(self) -> ConfigStore:
        return ConfigStore("memory://contract")


async def test_spaces_are_separate() -> None:
    async with ConfigStore("memory://one") as one, ConfigStore("memory://two") as two:
        await one.put("k", "in one")
        assert await two.get("k") is None
        assert (await ConfigStore("memory://one").get("k")) is not None
