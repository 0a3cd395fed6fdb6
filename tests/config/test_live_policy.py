"""Live policies (config/live.py): a server's limits follow a key of a configuration store; an
invalid revision never applies; gray revisions reach only the instances they pick until promoted;
the applied revision is cached, reported and shown. The store is each backend in turn: memory,
a directory, the built-in registry (in this process), the shared etcd and the shared ZooKeeper
(a fresh prefix or root)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from meshkit import Client, RpcError, Server
from meshkit.config import ConfigStore, ConfigUnavailable, Identity, LivePolicy
from meshkit.config.release import status_prefix
from meshkit.config.service import ConfigService
from meshkit.policy import Switches
from meshkit.testing import FakeClock
from tests.helpers import eventually
from tests.policy.services import Stock

URL = "memory://live#policy/stock"
BACKENDS = ["memory", "file", "meshkit", "etcd", "zk"]
NO_SHED = "[shedding]\nenabled = false\n"


def limit(burst: int, extra: str = "") -> str:
    return f'{NO_SHED}[server."stock.peek"]\nlimit = {{ rate = 1, burst = {burst} }}\n{extra}'


@pytest.fixture(params=BACKENDS)
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A store of each backend, as the URL a policy names (key after '#')."""
    kind = request.param
    if kind == "memory":
        yield "memory://live"
    elif kind == "file":
        yield f"file://{tmp_path / 'store'}?poll=0.01"
    elif kind == "etcd":
        yield f"etcd://127.0.0.1:2379/live-{uuid.uuid4().hex[:8]}"
    elif kind == "zk":
        yield f"zk://127.0.0.1:2181/meshkit-test/live-{uuid.uuid4().hex[:8]}"
    else:
        service = ConfigService(tmp_path / "registry")
        async with Server([service], host="127.0.0.1", port=0, middleware=[]) as server:
            yield f"meshkit://127.0.0.1:{server.port}"


def live(tmp_path: Path, name: str = "a", url: str = URL, **kwargs: object) -> LivePolicy:
    return LivePolicy(
        url,
        identity=Identity(name, zone=kwargs.pop("zone", None)),  # type: ignore[arg-type]
        cache_dir=tmp_path / f"cache-{name}",
        clock=FakeClock(),
        switches=Switches(),
        **kwargs,  # type: ignore[arg-type]
    )


async def admitted(client: Client, n: int) -> int:
    proxy = client.proxy(Stock)
    ok = 0
    for i in range(n):
        try:
            await proxy.peek(str(i))
        except RpcError:
            continue
        ok += 1
    return ok


async def test_a_limit_changed_in_the_store_applies_without_a_restart(tmp_path: Path, store_url: str) -> None:
    store = ConfigStore(store_url)
    first = await store.put("policy/stock", limit(2))
    policy = live(tmp_path, url=f"{store_url}#policy/stock")
    async with Server([Stock()], policy=policy, middleware=[]) as server, Client(target=server.address) as client:
        assert policy.revision == first and not policy.cached
        assert await admitted(client, 3) == 2
        second = await store.put("policy/stock", limit(5))
        await eventually(lambda: policy.revision == second, what="the new revision applied")
        assert await admitted(client, 6) == 5
        assert policy.snapshot()["config"]["revision"] == second


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server\n", "not valid TOML"),
        (f'{NO_SHED}[server."stock.peek"]\nlimt = {{ rate = 1 }}\n', "unknown field `limt`"),
        (f'{NO_SHED}[server."stock.peek"]\nlimit = {{ rate = -3 }}\n', "rate must be > 0"),
        (f'{NO_SHED}[server."stock.pe*k"]\nlimit = {{ rate = 3 }}\n', "stock.pe*k"),
        (f'{NO_SHED}[server."stock.peek"]\nlimit = {{ rate = 3, shared = true }}\n', "no redis URL"),
    ],
)
async def test_an_invalid_revision_never_applies_and_the_rejection_is_visible(
    tmp_path: Path, store_url: str, text: str, message: str
) -> None:
    store = ConfigStore(store_url)
    good = await store.put("policy/stock", limit(2))
    policy = live(tmp_path, url=f"{store_url}#policy/stock")
    async with Server([Stock()], policy=policy, middleware=[]) as server, Client(target=server.address) as client:
        bad = await store.put("policy/stock", text)
        await eventually(lambda: policy.last_rejected is not None, what="the rejection")
        assert policy.last_rejected is not None
        assert policy.last_rejected["revision"] == bad and message in policy.last_rejected["error"]
        assert "policy/stock@" in policy.last_rejected["error"]  # names where it came from
        assert policy.revision == good and policy.actions["config_rejected"] == 1
        assert await admitted(client, 4) == 2, "traffic keeps the last good limits"

        async def reported() -> bool:
            listing = await store.list(status_prefix("policy/stock"))
            return any(msgspec.json.decode(e.value)["rejected"] for e in listing)

        await eventually(reported, what="the rejection in the instance's status key")


async def test_a_gray_revision_reaches_only_the_instances_it_picks_until_promoted(
    tmp_path: Path, store_url: str
) -> None:
    from meshkit.config.live import promote

    store = ConfigStore(store_url)
    main = await store.put("policy/stock", limit(2))
    url = f"{store_url}#policy/stock"
    a, b, c = live(tmp_path, "a", url), live(tmp_path, "b", url, zone="az9"), live(tmp_path, "c", url)
    for p in (a, b, c):
        await p.start()
    try:
        gray = await store.put("policy/stock/gray", limit(7, '[release]\ninstances = ["a"]\nzones = ["az9"]\n'))
        await eventually(lambda: a.revision == gray and b.revision == gray, what="the picked instances on gray")
        assert a.gray and b.gray and c.revision == main and not c.gray
        promoted, kept = await promote(store, "policy/stock")
        assert kept is None
        await eventually(
            lambda: {p.revision for p in (a, b, c)} == {promoted}, what="everyone on the promoted revision"
        )
        assert not any(p.gray for p in (a, b, c))
        assert await store.get("policy/stock/gray") is None
    finally:
        for p in (a, b, c):
            await p.stop()


async def test_the_applied_revision_is_cached_and_a_start_without_the_center_runs_it(tmp_path: Path) -> None:
    store = ConfigStore("memory://live")
    revision = await store.put("policy/stock", limit(3))
    first = live(tmp_path)
    await first.start()
    await first.stop()
    down = ConfigStore("memory://live", backend=Unreachable())
    second = LivePolicy(URL, identity=Identity("a"), cache_dir=tmp_path / "cache-a", store=down, first_answer=0.2)
    assert second.revision == revision and second.cached  # read at construction: a client runs it at once
    await second.start()  # the center does not answer: it runs the cache, and says so
    assert second.status()["cached"] and second.reachable is False
    await second.stop()
    empty = LivePolicy(URL, identity=Identity("z"), cache_dir=tmp_path / "none", store=down, first_answer=0.2)
    with pytest.raises(ConfigUnavailable, match="no cached revision"):
        await empty.start()


async def test_a_client_follows_a_policy_url_from_its_first_call(tmp_path: Path) -> None:
    store = ConfigStore("memory://live")
    await store.put("policy/stock", f'{NO_SHED}[client."stock.peek"]\nlimit = {{ rate = 1, burst = 1 }}\n')
    async with Server([Stock()], middleware=[]) as server:
        client = Client(target=server.address, policy=URL)
        assert isinstance(client.policy, LivePolicy)
        policy = client.policy
        try:
            await client.proxy(Stock).peek("x")
            await eventually(lambda: policy.revision is not None, what="the client's policy loaded")
            await client.proxy(Stock).peek("y")  # the new rule's bucket: one token
            with pytest.raises(RpcError, match="rate limit"):
                await client.proxy(Stock).peek("z")
        finally:
            await client.close()
        assert policy._follower is None


class Unreachable:
    """A backend whose engine never answers."""

    def __getattr__(self, name: str) -> object:
        async def refuse(*args: object) -> object:
            raise ConfigUnavailable("the test's center is down")

        return refuse

    async def close(self) -> None:
        return None

    async def watch(self, prefix: str, since: int):  # type: ignore[no-untyped-def]
        raise ConfigUnavailable("the test's center is down")
        yield  # pragma: no cover


def test_policy_urls_split_into_store_and_key() -> None:
    from meshkit.config import split_policy_url
    from meshkit.errors import BadConfigRequest

    assert split_policy_url("etcd://127.0.0.1:2379/meshkit/config/policy/order") == (
        "etcd://127.0.0.1:2379",
        "policy/order",
    )
    assert split_policy_url("meshkit://127.0.0.1:7000/policy/order") == ("meshkit://127.0.0.1:7000", "policy/order")
    assert split_policy_url("file:///srv/config?poll=0.5#policy/order") == (
        "file:///srv/config?poll=0.5",
        "policy/order",
    )
    with pytest.raises(BadConfigRequest, match="names no key"):
        split_policy_url("file:///srv/config")
    with pytest.raises(ValueError, match="no configuration store has scheme ftp://"):
        Server([Stock()], policy="ftp://x/y")


_ = asyncio


async def test_a_store_that_restarted_with_new_values_under_old_revision_numbers_is_followed(tmp_path: Path) -> None:
    from tests.resilience.redis_engine import closed_port

    port = closed_port()
    url = f"meshkit://127.0.0.1:{port}"

    async def registry() -> Server:  # its store in memory: a restart starts again at revision 1
        server = Server([ConfigService()], host="127.0.0.1", port=port, middleware=[])
        await server.start()
        return server

    center = await registry()
    async with ConfigStore(url) as store:
        first = await store.put("policy/stock", limit(2))
    policy = live(tmp_path, url=f"{url}#policy/stock", report=False)
    await policy.start()
    try:
        assert policy.revision == first == 1
        await center.stop(grace=0)
        center = await registry()
        async with ConfigStore(url) as store:
            again = await store.put("policy/stock", limit(9))
        assert again == first  # the same number, another value
        await eventually(lambda: _burst(policy) == 9, what="the new value applied")
    finally:
        await policy.stop()
        await center.stop(grace=0)


KEY = "policy/stock"


@pytest.mark.parametrize(
    ("value", "message"), [(None, "has no key 'policy/stock'"), ("[server\n", "its only revision, 1, is invalid")]
)
async def test_a_server_does_not_start_on_a_key_it_cannot_run(tmp_path: Path, value: str | None, message: str) -> None:
    from meshkit.config import ConfigError

    if value is not None:
        await ConfigStore("memory://live").put(KEY, value)
    policy = live(tmp_path)
    server = Server([Stock()], policy=policy, middleware=[])
    with pytest.raises(ConfigError, match=message):
        await server.start()
    assert not server._started and policy._follower is None


async def test_a_cancelled_start_leaves_nothing_running(tmp_path: Path) -> None:
    down = ConfigStore("memory://live", backend=Unreachable())
    policy = LivePolicy(URL, identity=Identity("a"), cache_dir=False, store=down, first_answer=30)
    starting = asyncio.create_task(policy.start())
    await eventually(lambda: policy._follower is not None, what="the follower started")
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert policy._follower is None and policy._users == 0


async def test_the_status_key_ends_at_the_revision_that_runs(tmp_path: Path, store_url: str) -> None:
    store = ConfigStore(store_url)
    await store.put(KEY, limit(1))
    policy = live(tmp_path, url=f"{store_url}#{KEY}")
    await policy.start()
    try:
        for burst in range(2, 12):
            last = await store.put(KEY, limit(burst))
        await eventually(lambda: policy.revision == last, what="the last revision applied")

        async def reported_last() -> bool:
            entry = await store.get(f"_status/{KEY}/a")
            return entry is not None and msgspec.json.decode(entry.value)["revision"] == last

        await eventually(reported_last, what="the status key at the last revision")
    finally:
        await policy.stop()
    assert await store.get(f"_status/{KEY}/a") is None  # a clean stop takes its report away


def _burst(policy: LivePolicy) -> float | None:
    rule = policy.config.server.get("stock.peek")
    return None if rule is None or rule.limit is None else rule.limit.burst


async def test_a_client_that_starts_its_policy_is_limited_from_its_first_call(tmp_path: Path) -> None:
    store = ConfigStore("memory://live")
    await store.put(KEY, f'{NO_SHED}[client."stock.peek"]\nlimit = {{ rate = 0.001, burst = 2 }}\n')
    async with Server([Stock()], middleware=[]) as server:
        client = Client(target=server.address, policy=URL)
        try:
            assert isinstance(client.policy, LivePolicy)
            await client.policy.start()  # as docs/configuration.md says: limits from the first call
            results = await asyncio.gather(*(client.proxy(Stock).peek("x") for _ in range(5)), return_exceptions=True)
            assert sum(not isinstance(r, Exception) for r in results) == 2
        finally:
            await client.close()
        assert client.policy._follower is None
