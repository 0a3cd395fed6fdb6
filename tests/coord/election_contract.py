"""The election contract, run against every election backend's engine.

A backend's test module subclasses :class:`ElectionContract`::

    class TestEtcdElection(ElectionContract):
        url = "etcd://127.0.0.1:2379"

        async def break_lease(self, election: Election, term: Term) -> None:
            ...  # end the leader's lease on the engine's side (revoke it, expire the session)

Every test uses a fresh election name.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from meshkit.coord.election import Election, Term
from meshkit.errors import LockLost, LockTimeout
from tests.coord.contract import eventually

LONG_TTL = 30.0


class ElectionContract:
    url: str = ""
    ttl: float = 3.0

    async def break_lease(self, election: Election, term: Term) -> None:
        raise NotImplementedError

    @pytest.fixture
    async def pair(self) -> AsyncIterator[tuple[Election, Election]]:
        name = f"contract-{uuid.uuid4().hex[:12]}"
        a, b = Election(self.url, name, ttl=self.ttl), Election(self.url, name, ttl=self.ttl)
        try:
            yield a, b
        finally:
            await a.close()
            await b.close()

    async def test_one_leader_at_a_time_and_the_next_is_elected_when_it_resigns(
        self, pair: tuple[Election, Election]
    ) -> None:
        a, b = pair
        assert await a.leader() is None
        first = await a.elect(b"node-a")
        assert await b.leader() == "node-a"
        with pytest.raises(LockTimeout):
            await b.elect(b"node-b", wait=0)
        second_task = asyncio.create_task(b.elect(b"node-b"))
        await a.resign()
        second = await asyncio.wait_for(second_task, timeout=10)
        assert await a.leader() == "node-b"
        assert second.token > first.token  # the term token grows with every term
        await b.resign()
        await eventually(lambda: self._no_leader(a), what="no leader after the last resigned")

    async def _no_leader(self, election: Election) -> bool:
        return await election.leader() is None

    async def test_observe_sees_every_change_of_leader(self, pair: tuple[Election, Election]) -> None:
        a, b = pair
        seen: list[str | None] = []

        async def follow() -> None:
            async for leader in a.observe():
                seen.append(leader)
                if leader == "node-b":
                    return

        follower = asyncio.create_task(follow())
        await eventually(lambda: seen == [None], what="observe's first answer")
        await a.elect(b"node-a")
        await eventually(lambda: seen[-1:] == ["node-a"], what="observe seeing node-a")
        waiting = asyncio.create_task(b.elect(b"node-b"))
        await a.resign()
        await waiting
        await asyncio.wait_for(follower, timeout=10)
        assert seen[0] is None and seen[-1] == "node-b" and "node-a" in seen
        assert [x for x in seen if x is not None] == ["node-a", "node-b"]
        await b.resign()

    async def test_a_leader_whose_lease_breaks_loses_the_term_and_another_is_elected(
        self, pair: tuple[Election, Election]
    ) -> None:
        a, b = pair
        loop = asyncio.get_running_loop()
        with pytest.raises(LockLost):
            async with a.campaign("node-a") as term:
                challenger = asyncio.create_task(b.elect(b"node-b"))  # once a leads: it waits
                await self.break_lease(a, term)
                broke_at = loop.time()
                await asyncio.sleep(LONG_TTL)  # cancelled when the term is lost
        second = await asyncio.wait_for(challenger, timeout=self.ttl * 3)
        assert loop.time() - broke_at < self.ttl * 3
        assert second.token > term.token and await a.leader() == "node-b"
        await b.resign()
