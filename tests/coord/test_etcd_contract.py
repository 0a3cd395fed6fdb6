"""etcd:// keeps the lock and election contracts (tests/coord/*contract.py)."""

from __future__ import annotations

from meshkit.coord.election import Election, Term
from meshkit.coord.etcd import EtcdLocks
from meshkit.coord.locks import Held, Locks
from tests.coord.contract import CutOffContract
from tests.coord.election_contract import ElectionContract
from tests.coord.etcd_zk import ETCD, EtcdInspector, require

PREFIX = "/meshkit-test/contract"


async def revoke(backend: object, held: Held) -> None:
    """End the holder's lease on etcd's side, as an operator (or its expiry) would."""
    assert isinstance(backend, EtcdLocks)
    require(ETCD, "etcd")
    inspector = EtcdInspector(PREFIX)
    try:
        await inspector.revoke(held._grant.handle[1])
    finally:
        await inspector.http.aclose()


class TestEtcdLocks(CutOffContract):
    url = f"etcd://{ETCD}{PREFIX}"

    async def break_lease(self, locks: Locks, held: Held) -> None:
        await revoke(locks.backend, held)

    async def leftovers(self, locks: Locks, name: str) -> list[str]:
        inspector = EtcdInspector(PREFIX)
        try:
            return await inspector.nodes(name)
        finally:
            await inspector.http.aclose()


class TestEtcdElection(ElectionContract):
    url = f"etcd://{ETCD}{PREFIX}"
    ttl = 2.0

    async def break_lease(self, election: Election, term: Term) -> None:
        await revoke(election.backend, term)
