"""zk:// keeps the lock and election contracts (tests/coord/*contract.py).

Its lease is the session: breaking one is expiring the session (see test_zookeeper_session_ends).
"""

from __future__ import annotations

from meshkit.coord.election import Election, Term
from meshkit.coord.locks import Held, Locks
from meshkit.coord.zookeeper import ZooKeeperLocks
from tests.coord.contract import LockContract
from tests.coord.election_contract import ElectionContract
from tests.coord.etcd_zk import ZK, ZooKeeperInspector, require
from tests.coord.test_zookeeper_session_ends import expire

PREFIX = "/meshkit-test/contract"


async def expire_session(backend: object) -> None:
    assert isinstance(backend, ZooKeeperLocks)
    require(ZK, "ZooKeeper")
    await expire(backend)


class TestZooKeeperLocks(LockContract):
    url = f"zk://{ZK}{PREFIX}"

    async def break_lease(self, locks: Locks, held: Held) -> None:
        await expire_session(locks.backend)

    async def leftovers(self, locks: Locks, name: str) -> list[str]:
        inspector = ZooKeeperInspector(PREFIX)
        try:
            return await inspector.nodes(name)
        finally:
            inspector.zk.stop()
            inspector.zk.close()


class TestZooKeeperElection(ElectionContract):
    url = f"zk://{ZK}{PREFIX}"

    async def break_lease(self, election: Election, term: Term) -> None:
        await expire_session(election.backend)
