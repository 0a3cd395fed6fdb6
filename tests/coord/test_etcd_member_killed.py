"""etcd killed under a holder: the holder gives the lock up within its TTL (its own clock, as it
cannot reach etcd), and after etcd comes back the next holder gets a greater token. A private
etcd on its own ports (the shared one is never stopped)."""

from __future__ import annotations

import asyncio

import pytest

from meshkit.coord import LockLost, Locks
from tests.discovery.engines import PrivateEtcd

pytestmark = pytest.mark.slow

TTL = 2.0


async def test_a_holder_whose_etcd_dies_gives_up_within_its_ttl_and_the_next_holder_fences_it_out() -> None:
    etcd = PrivateEtcd(client_port=23795, peer_port=23796)
    await asyncio.to_thread(etcd.start)
    url = f"etcd://127.0.0.1:{etcd.port}/member-killed"
    locks = Locks(url)
    loop = asyncio.get_running_loop()
    try:
        with pytest.raises(LockLost):
            async with locks.lock("job", ttl=TTL, wait=10) as held:
                await asyncio.to_thread(etcd.kill)
                killed_at = loop.time()
                await asyncio.wait_for(held.lost.wait(), timeout=TTL * 3)
                gave_up_after = loop.time() - killed_at
                await asyncio.sleep(30)  # cancelled: the body must not go on unprotected
        assert gave_up_after <= TTL, f"the holder believed it held the lock {gave_up_after:.2f} s after etcd died"
        await asyncio.to_thread(etcd.start)
        async with Locks(url) as other:
            # etcd keeps leases across a restart (and extends them), so the old key may sit there
            # until its lease runs out; then the next holder is granted, with a greater token.
            second = await other.acquire("job", ttl=TTL, wait=30)
            assert second.token > held.token
            await second.release()
    finally:
        await locks.close()
        await asyncio.to_thread(etcd.remove)
