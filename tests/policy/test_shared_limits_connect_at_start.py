"""A shared (Redis) limit is connected when its server starts, never inside a call.

``Policy.start()`` (which ``Server.start()`` calls) opens the Redis connection and loads the
token-bucket script within a second; redis-py itself is imported when the policy is built. A
Redis that is down at start sends the shared limits to the local bucket at once (one warning),
and calls do not try Redis again before the retry interval.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import redis.asyncio.connection as redis_connection

from meshkit import Client, RpcError, Server, StatusCode
from meshkit.policy import ClientRule, Limit, Policy, PolicyConfig, ServerRule, Shedding, Switches
from meshkit.resilience.redis_bucket import SCRIPT
from meshkit.testing import FakeClock
from tests.policy.services import Stock
from tests.resilience.redis_engine import SHARED, PrivateRedis, closed_port, require_redis


def shared_policy(url: str, clock: FakeClock | None = None, burst: float = 3) -> Policy:
    config = PolicyConfig(
        redis=url,
        shedding=Shedding(enabled=False),
        server={"stock.peek": ServerRule(limit=Limit(rate=1, burst=burst, shared=True))},
    )
    return Policy(config, clock=clock or FakeClock(), switches=Switches())


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def observer(private_redis: PrivateRedis) -> AsyncIterator[aioredis.Redis]:
    r = aioredis.Redis(host="127.0.0.1", port=private_redis.port)
    yield r
    await r.aclose()


async def test_the_connection_and_the_script_are_ready_when_the_server_starts(
    private_redis: PrivateRedis, observer: aioredis.Redis
) -> None:
    sha = aioredis.Redis().register_script(SCRIPT).sha
    assert await observer.script_exists(sha) == [False]  # a fresh Redis: nothing loaded yet
    async with Server([Stock()], policy=shared_policy(private_redis.url), middleware=[]):
        me = await observer.client_id()
        others = [c for c in await observer.client_list() if int(c["id"]) != me]
        assert others, "no connection from the server's shared limit after start()"
        assert await observer.script_exists(sha) == [True]


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every TCP connect redis-py attempts, as "host:port"."""
    attempts: list[str] = []
    real = redis_connection.Connection._connect

    async def counted(self: Any) -> None:
        attempts.append(f"{self.host}:{self.port}")
        await real(self)

    monkeypatch.setattr(redis_connection.Connection, "_connect", counted)
    return attempts


async def test_a_redis_down_at_start_sends_shared_limits_to_the_local_bucket_at_once(
    connects: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    clock = FakeClock()  # the retry interval never passes: no call may try Redis
    caplog.set_level(logging.WARNING, logger="meshkit.resilience.redis")
    server = Server([Stock()], policy=shared_policy(url, clock), middleware=[])
    await asyncio.wait_for(server.start(), timeout=5.0)
    try:
        tried_at_start = len(connects)
        assert tried_at_start >= 1, "start() did not try to connect"
        async with Client(target=server.address) as client:
            proxy = client.proxy(Stock)
            answers: list[Any] = []
            for i in range(5):
                try:
                    answers.append(await proxy.peek(str(i)))
                except RpcError as exc:
                    answers.append((exc.code, exc.details["reason"]))
        # The local bucket (burst 3, fallback_share 1) decided, and Redis was not tried again.
        assert answers == ["0", "1", "2"] + [(StatusCode.RESOURCE_EXHAUSTED, "limit")] * 2
        assert len(connects) == tried_at_start
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and url in warnings[0] and "local bucket" in warnings[0], warnings
    finally:
        await server.stop()


async def test_a_redis_that_does_not_answer_delays_start_by_a_second_at_most() -> None:
    """Start gives up on a silent Redis after its connect bound, so the first calls are decided
    locally at once instead of waiting for redis-py's own five-second socket timeout."""
    silent = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)
    url = f"redis://127.0.0.1:{silent.sockets[0].getsockname()[1]}/0"
    server = Server([Stock()], policy=shared_policy(url), middleware=[])
    try:
        await asyncio.wait_for(server.start(), timeout=4.0)
        async with Client(target=server.address) as client:
            assert await client.proxy(Stock).with_options(timeout=3.0).peek("a") == "a"
    finally:
        await server.stop()
        silent.close()


#: A server of a fresh process (redis-py not imported yet) with a shared limit and shedding on,
#: as `docs/resilience.md` writes it; prints its port, serves until stdin closes.
SERVER = """
import asyncio, sys
from meshkit import Server
from meshkit.policy import Policy
from tests.policy.services import Stock

async def main(path):
    async with Server([Stock()], host="127.0.0.1", port=0, policy=Policy.from_file(path), middleware=[]) as server:
        print(server.port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

asyncio.run(main(sys.argv[1]))
"""


async def test_a_cold_server_with_a_shared_limit_answers_its_first_calls_without_shedding() -> None:
    require_redis()
    policy = Path(tempfile.mkdtemp(prefix="meshkit-policy-")) / "policy.toml"
    policy.write_text(
        f'redis = "{SHARED}"\n\n[shedding]\nenabled = true\n\n'
        f'[server."stock.peek"]\nlimit = {{ rate = 1000, shared = true }}\n'
    )
    # The limit's key is per method; a fresh one per run would need a per-run service name, and
    # 1000 a second cannot run out over 12 calls anyway.
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(policy)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parents[2],
    )
    try:
        assert proc.stdout is not None
        port = int(await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout=30))
        async with Client(target=f"127.0.0.1:{port}") as client:
            proxy = client.proxy(Stock)

            async def call(i: int) -> Any:
                try:
                    return await proxy.peek(str(i))
                except RpcError as exc:
                    return exc.code.name, exc.details.get("reason")

            calls = []
            for i in range(12):  # 12 calls 10 ms apart: trivial load, spaced as clients send
                calls.append(asyncio.create_task(call(i)))
                await asyncio.sleep(0.01)
            assert await asyncio.gather(*calls) == [str(i) for i in range(12)]
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


IMPORTS = """
import sys
from meshkit.policy import ClientRule, Limit, Policy, PolicyConfig
assert "redis" not in sys.modules
Policy(PolicyConfig(redis=sys.argv[1], client={"stock.*": ClientRule(limit=Limit(rate=5, shared=True))}))
print("redis" in sys.modules)
"""


def test_a_client_policy_with_a_shared_limit_imports_redis_when_it_is_built() -> None:
    out = subprocess.run([sys.executable, "-c", IMPORTS, SHARED], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"


async def test_the_first_shared_calls_of_a_client_share_one_connect_attempt(connects: list[str]) -> None:
    """A client has no start: its first shared calls wait for one connect made for all of them,
    and with Redis down all of them are decided by the local bucket (burst 3 of rate 1)."""
    url = f"redis://127.0.0.1:{closed_port()}/0"
    rule = ClientRule(limit=Limit(rate=1, burst=3, shared=True))
    policy = Policy(PolicyConfig(redis=url, client={"*": rule}), clock=FakeClock(), switches=Switches())
    async with Server([Stock()], middleware=[]) as server, Client(target=server.address, policy=policy) as client:
        proxy = client.proxy(Stock)
        answers = await asyncio.gather(*(proxy.peek(str(i)) for i in range(5)), return_exceptions=True)
    assert answers[:3] == ["0", "1", "2"]
    assert all(isinstance(a, RpcError) and a.details["reason"] == "client_limit" for a in answers[3:]), answers
    assert connects == [url.removeprefix("redis://").removesuffix("/0")]
    await policy.stop()
