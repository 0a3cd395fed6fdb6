"""memory:// against a model of a lease lock, driven by hypothesis on a clock the test moves.

The model: a name is held by at most one owner, until its lease (ttl after the last grant or
renewal) runs out; only the holder renews or releases; every grant's token is greater than all
before it. Any sequence of try-once acquires, renewals, releases and clock moves must agree.
"""

from __future__ import annotations

import asyncio

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from meshkit.coord import memory
from meshkit.coord.backend import Grant
from meshkit.errors import LockTimeout

OWNERS = ["a", "b", "c"]
TTL = 5.0


class LeaseModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        memory.reset()
        self.loop = asyncio.new_event_loop()
        self.now = 0.0
        self.locks = memory.MemoryLocks("model", clock=lambda: self.now)
        self.grants: dict[str, Grant] = {}  # the last grant each owner got
        self.holder: str | None = None  # the model's holder
        self.expires = 0.0
        self.tokens: list[int] = []

    def teardown(self) -> None:
        self.loop.close()
        memory.reset()

    def run(self, coro: object) -> object:
        return self.loop.run_until_complete(coro)  # type: ignore[arg-type]

    def model_holder(self) -> str | None:
        if self.holder is not None and self.now >= self.expires:
            self.holder = None
        return self.holder

    @rule(owner=st.sampled_from(OWNERS))
    def acquire(self, owner: str) -> None:
        free = self.model_holder() is None
        try:
            grant = self.run(self.locks.acquire("x", f"{owner}-{len(self.tokens)}", TTL, 0))
        except LockTimeout:
            assert not free, "refused a free lock"
            return
        assert free, f"granted to {owner} while {self.holder} holds it"
        assert isinstance(grant, Grant)
        self.grants[owner] = grant
        self.holder, self.expires = owner, self.now + TTL
        self.tokens.append(grant.token)

    @rule(owner=st.sampled_from(OWNERS))
    def renew(self, owner: str) -> None:
        grant = self.grants.get(owner)
        if grant is None:
            return
        ours = self.model_holder() == owner and self.grants[owner] is grant
        assert self.run(self.locks.renew(grant)) is ours
        if ours:
            self.expires = self.now + TTL

    @rule(owner=st.sampled_from(OWNERS))
    def release(self, owner: str) -> None:
        grant = self.grants.pop(owner, None)
        if grant is None:
            return
        ours = self.model_holder() == owner
        assert self.run(self.locks.release(grant)) is ours
        if ours:
            self.holder = None

    @rule(dt=st.sampled_from([0.5, 2.0, 4.9, 5.0, 7.0]))
    def advance(self, dt: float) -> None:
        self.now += dt

    @invariant()
    def tokens_only_grow(self) -> None:
        assert all(a < b for a, b in zip(self.tokens, self.tokens[1:], strict=False))

    @invariant()
    def the_engine_says_who_holds_it(self) -> None:
        held = self.run(self.locks.holder("x"))
        expected = self.model_holder()
        assert (held.owner.split("-")[0] if held is not None else None) == expected


LeaseModel.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
TestLeaseModel = LeaseModel.TestCase
