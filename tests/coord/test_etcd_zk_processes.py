"""etcd:// and zk:// between real processes: racers, a SIGKILLed and a SIGSTOPped holder
(tests/coord/process_contract.py), each under a prefix of this module's own, checked empty at the end."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from tests.coord.etcd_zk import ETCD, ZK, EtcdInspector, ZooKeeperInspector, require
from tests.coord.process_contract import ProcessContract

ETCD_PREFIX = f"/meshkit-test/proc-{uuid.uuid4().hex[:10]}"
ZK_PREFIX = f"/meshkit-test/proc-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module", autouse=True)
def _nothing_left_behind() -> Iterator[None]:
    require(ETCD, "etcd")
    require(ZK, "ZooKeeper")
    yield

    async def check() -> list[str]:
        etcd, zk = EtcdInspector(ETCD_PREFIX), ZooKeeperInspector(ZK_PREFIX)
        try:
            return await etcd.everything() + await zk.everything()
        finally:
            await etcd.close()
            await zk.close()

    assert asyncio.run(check()) == []


class TestEtcdProcesses(ProcessContract):
    url = f"etcd://{ETCD}{ETCD_PREFIX}"
    ttl = 2.0  # etcd's shortest lease with the default election timeout


class TestZooKeeperProcesses(ProcessContract):
    # The session timeout is the lease: 4 s is the shortest a server with the default tickTime
    # (2 s) grants, and it checks expiry once a tick, hence the slack.
    url = f"zk://{ZK}{ZK_PREFIX}?ttl=4"
    ttl = 4.0
    slack = 3.0
