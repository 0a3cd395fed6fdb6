"""The configuration store contract (meshkit.config.backend's docstring), run against every backend.

A backend's test module subclasses :class:`ConfigContract` and gives ``open()``: a new
:class:`ConfigStore` on the same store each time it is called (two calls are two processes, as far
as the store can tell). Every test works under a fresh prefix, so backends may share one engine.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from meshkit.config import BadConfigRequest, Change, ConfigStore, Conflict


class ConfigContract:
    def open(self) -> ConfigStore:
        raise NotImplementedError

    @pytest.fixture
    def prefix(self) -> str:
        return f"contract-{uuid.uuid4().hex[:12]}/"

    @pytest.fixture
    async def two(self) -> AsyncIterator[tuple[ConfigStore, ConfigStore]]:
        a, b = self.open(), self.open()
        try:
            yield a, b
        finally:
            await a.close()
            await b.close()

    async def test_every_write_takes_the_next_revision_of_the_store(
        self, two: tuple[ConfigStore, ConfigStore], prefix: str
    ) -> None:
        a, b = two
        first = await a.put(f"{prefix}x", "1")
        second = await b.put(f"{prefix}y", b"2")
        third = await a.put(f"{prefix}x", "3")
        assert first < second < third
        entry = await b.get(f"{prefix}x")
        assert entry is not None and (entry.key, entry.value, entry.revision) == (f"{prefix}x", b"3", third)
        assert entry.text == "3"
        assert await a.get(f"{prefix}missing") is None

    async def test_compare_and_set_writes_only_at_the_expected_revision(
        self, two: tuple[ConfigStore, ConfigStore], prefix: str
    ) -> None:
        a, b = two
        key = f"{prefix}rule"
        created = await a.put(key, "v1", expect=0)
        with pytest.raises(Conflict) as exists:
            await b.put(key, "other", expect=0)
        assert exists.value.current == created
        with pytest.raises(Conflict) as stale:
            await b.put(key, "other", expect=created + 100)
        assert stale.value.current == created
        entry = await a.get(key)
        assert entry is not None and entry.value == b"v1", "a refused write changed nothing"
        updated = await b.put(key, "v2", expect=created)
        assert updated > created
        with pytest.raises(Conflict):
            await a.delete(key, expect=created)
        deleted = await a.delete(key, expect=updated)
        assert deleted is not None and deleted > updated
        assert await a.get(key) is None

    async def test_deleting_a_missing_key_writes_nothing(
        self, two: tuple[ConfigStore, ConfigStore], prefix: str
    ) -> None:
        a, _ = two
        before = (await a.list(prefix)).revision
        assert await a.delete(f"{prefix}never") is None
        assert (await a.list(prefix)).revision == before

    async def test_a_listing_is_sorted_by_key_and_says_its_revision(
        self, two: tuple[ConfigStore, ConfigStore], prefix: str
    ) -> None:
        a, b = two
        for key in ("b", "a", "c/d"):
            last = await a.put(f"{prefix}{key}", key)
        await a.put(f"other-{prefix}z", "outside the prefix")
        listing = await b.list(prefix)
        assert [e.key for e in listing] == [f"{prefix}a", f"{prefix}b", f"{prefix}c/d"]
        assert len(listing) == 3 and listing.revision >= last

    async def test_a_watch_sees_every_later_change_in_order_once(
        self, two: tuple[ConfigStore, ConfigStore], prefix: str
    ) -> None:
        a, b = two
        start = await a.put(f"{prefix}seed", "0")
        seen: list[Change] = []

        async def watch(count: int) -> None:
            async for change in b.watch(prefix, since=start):
                seen.append(change)
                if len(seen) == count:
                    return

        watcher = asyncio.create_task(watch(41))
        written = []
        for i in range(20):
            written.append(await a.put(f"{prefix}k{i % 3}", str(i)))
            await a.put(f"elsewhere-{prefix}k", str(i))  # not under the prefix: never seen
            written.append(await a.put(f"{prefix}n{i}", str(i)))
        written.append(await a.delete(f"{prefix}seed"))
        await asyncio.wait_for(watcher, 10)
        assert [c.revision for c in seen] == written, "lost, repeated or out of order"
        assert seen[-1].deleted and seen[-1].key == f"{prefix}seed"
        assert all(c.key.startswith(prefix) for c in seen)

    async def test_a_watch_from_now_starts_after_the_current_revision(
        self, two: tuple[ConfigStore, ConfigStore], prefix: str
    ) -> None:
        a, b = two
        old = await a.put(f"{prefix}old", "before the watch")
        changes = b.watch(prefix)
        first = asyncio.ensure_future(anext(changes))
        written = []
        for i in range(1000):  # keep writing until the watch (started at some point) sees one
            written.append(await a.put(f"{prefix}new", str(i)))
            done, _ = await asyncio.wait([first], timeout=0.01)
            if done:
                break
        change = await asyncio.wait_for(first, 10)
        assert change.revision > old and change.revision in written and change.key == f"{prefix}new"
        await changes.aclose()

    async def test_history_and_rollback_write_an_old_value_as_a_new_revision(
        self, two: tuple[ConfigStore, ConfigStore], prefix: str
    ) -> None:
        a, b = two
        key = f"{prefix}policy"
        r1 = await a.put(key, "limit = 10")
        r2 = await a.put(key, "limit = 20")
        r3 = await b.rollback(key, to=r1)
        assert r3 > r2
        entry = await a.get(key)
        assert entry is not None and (entry.text, entry.revision) == ("limit = 10", r3)
        history = await b.history(key)
        assert [(c.revision, c.value) for c in history] == [
            (r1, b"limit = 10"),
            (r2, b"limit = 20"),
            (r3, b"limit = 10"),
        ]
        r4 = await a.delete(key)
        r5 = await a.put(key, "limit = 30")
        assert r4 is not None
        r6 = await a.rollback(key, to=r4)  # to the deletion: the key is deleted again
        assert r6 > r5 and await a.get(key) is None
        with pytest.raises(BadConfigRequest):
            await a.rollback(key, to=r1 - 1)  # before the key existed

    async def test_racing_compare_and_set_writers_lose_no_update(
        self, two: tuple[ConfigStore, ConfigStore], prefix: str
    ) -> None:
        key = f"{prefix}counter"
        await two[0].put(key, "0", expect=0)
        conflicts = 0

        async def increment(store: ConfigStore, times: int) -> None:
            nonlocal conflicts
            for _ in range(times):
                while True:
                    entry = await store.get(key)
                    assert entry is not None
                    try:
                        await store.put(key, str(int(entry.text) + 1), expect=entry.revision)
                        break
                    except Conflict:
                        conflicts += 1

        await asyncio.gather(increment(two[0], 30), increment(two[1], 30))
        entry = await two[0].get(key)
        assert entry is not None and entry.text == "60", f"lost updates ({conflicts} conflicts)"
        values = [int(c.value or b"0") for c in await two[1].history(key)]
        assert values == list(range(61)), "every revision of the key is one increment: one winner each"
