"""An etcd or ZooKeeper that cannot be reached is EngineUnavailable, naming where it was looked
for and how to start it, never the driver's own exception."""

from __future__ import annotations

import pytest

from meshkit.coord.etcd import EtcdLocks
from meshkit.coord.zookeeper import ZooKeeperLocks
from meshkit.errors import EngineUnavailable, StatusCode
from tests.coord.etcd_zk import unique


@pytest.mark.parametrize("kind", ["etcd", "zk"])
async def test_an_unreachable_engine_is_engine_unavailable_naming_it(kind: str) -> None:
    backend = EtcdLocks("127.0.0.1:1", prefix="/t") if kind == "etcd" else ZooKeeperLocks("127.0.0.1:1", prefix="/t")
    try:
        with pytest.raises(EngineUnavailable, match=r"127\.0\.0\.1:1\b.*start it with: bash scripts/engines\.sh") as e:
            await backend.acquire(unique(), "a", 10.0, 0)
        assert e.value.code == StatusCode.UNAVAILABLE
        with pytest.raises(EngineUnavailable, match=r"127\.0\.0\.1:1\b"):
            await backend.holder(unique())
    finally:
        await backend.close()
