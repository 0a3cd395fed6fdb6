"""memory:// keeps the election contract inside one process (tests/coord/election_contract.py)."""

from __future__ import annotations

from meshkit.coord import memory
from meshkit.coord.election import Election, Term
from tests.coord.election_contract import ElectionContract


class TestMemoryElection(ElectionContract):
    url = "memory://elections"
    ttl = 1.0

    async def break_lease(self, election: Election, term: Term) -> None:
        state = memory._spaces["elections"][term.name]
        memory.MemoryLocks("elections")._set_holder(state, None)  # the lease ran out on the engine
