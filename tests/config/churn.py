"""The churn scenario of issue 16's watch test, shared by the backends a test can restart: 3 writers
put 1,000 times in all while ``restart()`` runs once (after 300 puts); a watcher that began before
must then have seen exactly the store's revisions of those keys, once each, in order."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from meshkit.config import ConfigStore, ConfigUnavailable
from tests.helpers import eventually


async def watch_through_a_restart(url: str, restart: Callable[[], Awaitable[None]]) -> None:
    seen: list[int] = []
    written = 0
    async with ConfigStore(url) as watching:
        start = (await watching.list()).revision

        async def watch() -> None:
            async for change in watching.watch("churn/", since=start):
                seen.append(change.revision)

        async def writer(number: int, puts: int) -> None:
            nonlocal written
            async with ConfigStore(url) as store:
                for i in range(puts):
                    while True:
                        try:
                            await store.put(f"churn/w{number}", str(i))
                            break
                        except ConfigUnavailable:  # the engine is restarting: try again
                            await asyncio.sleep(0.05)
                    written += 1

        watcher = asyncio.create_task(watch())
        writers = [asyncio.create_task(writer(n, puts)) for n, puts in enumerate((334, 333, 333))]
        await eventually(lambda: written >= 300, timeout=60, what="300 puts before the restart")
        await restart()
        await asyncio.wait_for(asyncio.gather(*writers), 120)
        kept = sorted([c.revision for n in range(3) for c in await watching.history(f"churn/w{n}")])
        await eventually(lambda: len(seen) >= len(kept), timeout=30, what="the watcher caught up")
        watcher.cancel()
        assert len(kept) >= 1000  # a put retried after its answer was lost may have been applied twice
        assert seen == kept, "the watcher lost, repeated or reordered a revision"
