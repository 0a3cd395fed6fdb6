"""The scheme table: registry URLs open the backend their scheme declares, in code or by entry point."""

from __future__ import annotations

import importlib.metadata
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshkit import Client, Server
from meshkit.discovery import (
    ENTRY_POINT_GROUP,
    Instance,
    RegistryURL,
    backends,
    open_registry,
    register_backend,
    schemes,
)
from meshkit.discovery.memory import MemoryRegistry, reset
from tests.discovery.fake_backend import FakeRegistry, open_fake
from tests.rpc.services import Greeter

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test gets the real table as it is now, and no test's declarations outlive it."""
    monkeypatch.setattr(backends._table, "declared", dict(backends._table.declared))
    monkeypatch.setattr(backends._table, "entry_points", None)
    reset()
    yield
    reset()


def _entry_points(*declared: tuple[str, str]) -> Any:
    """A stand-in for ``importlib.metadata.entry_points`` that knows only ``declared`` (name, value)."""
    eps = [importlib.metadata.EntryPoint(name, value, ENTRY_POINT_GROUP) for name, value in declared]

    def entry_points(*, group: str) -> list[importlib.metadata.EntryPoint]:
        return [ep for ep in eps if ep.group == group]

    return entry_points


async def test_a_backend_registered_in_code_is_opened_by_its_url() -> None:
    register_backend("fake", open_fake)
    registry = open_registry("fake://one:1,two:2/prefix?ttl=3")
    assert isinstance(registry, FakeRegistry)
    assert (registry.url.netloc, registry.url.path, registry.ttl) == ("one:1,two:2", "/prefix", 3.0)
    await registry.register(Instance(service="s", host="h", port=1))
    assert [i.port for i in await open_registry("fake://one:1,two:2").resolve("s")] == [1]
    assert "fake" in schemes()


async def test_a_backend_declared_by_an_entry_point_is_opened_by_its_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        importlib.metadata, "entry_points", _entry_points(("fake", "tests.discovery.fake_backend:open_fake"))
    )
    assert isinstance(open_registry("fake://x?ttl=2"), FakeRegistry)
    assert "fake" in schemes()


async def test_a_third_party_backend_serves_a_server_and_a_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        importlib.metadata, "entry_points", _entry_points(("fake", "tests.discovery.fake_backend:open_fake"))
    )
    server = Server([Greeter()], host="127.0.0.1", port=0, registry="fake://shop")
    await server.start()
    client = Client(registry="fake://shop")
    try:
        assert await client.proxy(Greeter).hello("ann") == "hello ann"
    finally:
        await client.close()
        await server.stop(grace=1)


def test_entry_points_are_read_once_and_only_when_the_code_table_cannot_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads = []
    fake = _entry_points(("fake", "tests.discovery.fake_backend:open_fake"))

    def counting(*, group: str) -> Any:
        reads.append(group)
        return fake(group=group)

    monkeypatch.setattr(importlib.metadata, "entry_points", counting)
    open_registry("memory://")
    assert reads == []  # a scheme declared in code never scans the installed distributions
    open_registry("fake://a")
    open_registry("fake://b")
    with pytest.raises(ValueError):
        open_registry("nope://c")
    assert reads == [ENTRY_POINT_GROUP]


def test_a_scheme_declared_in_code_wins_over_an_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        importlib.metadata, "entry_points", _entry_points(("memory", "tests.discovery.fake_backend:open_fake"))
    )
    assert isinstance(open_registry("memory://x"), MemoryRegistry)


def test_registering_a_scheme_again_replaces_it() -> None:
    register_backend("memory", open_fake)
    assert isinstance(open_registry("memory://x"), FakeRegistry)


def test_a_declaration_by_reference_is_imported_when_first_opened() -> None:
    register_backend("fake", "tests.discovery.fake_backend:open_fake")
    assert isinstance(open_registry("fake://x"), FakeRegistry)


def test_an_unknown_scheme_names_the_url_and_every_known_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        importlib.metadata, "entry_points", _entry_points(("thirdparty", "tests.discovery.fake_backend:open_fake"))
    )
    with pytest.raises(ValueError) as info:
        open_registry("consul://10.0.0.1:8500")
    message = str(info.value)
    assert "'consul://10.0.0.1:8500'" in message
    for scheme in ("memory", "meshkit", "etcd", "zk", "thirdparty"):
        assert f"{scheme}://" in message


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ("tests.discovery.no_such_module:open_fake", ImportError, "fake:// .*could not be loaded"),
        ("tests.discovery.fake_backend:no_such_name", ImportError, "fake:// .*could not be loaded"),
        ("tests.discovery.fake_backend:NOT_A_FACTORY", TypeError, "not a factory"),
    ],
)
def test_a_broken_entry_point_is_named_when_its_scheme_is_opened(
    monkeypatch: pytest.MonkeyPatch, value: str, error: type[Exception], match: str
) -> None:
    monkeypatch.setattr(importlib.metadata, "entry_points", _entry_points(("fake", value)))
    assert "fake" in schemes()  # listing does not import it
    with pytest.raises(error, match=match):
        open_registry("fake://x")


def test_a_factory_that_makes_something_else_than_a_registry_is_refused() -> None:
    register_backend("half", lambda url: _ResolveOnly())  # type: ignore[arg-type,return-value]
    with pytest.raises(TypeError, match=r"half://.*not a Registry \(it lacks close, deregister"):
        open_registry("half://x")


class _ResolveOnly:
    forgets_on_restart = False
    ttl = None

    async def resolve(self, service: str) -> list[Instance]:
        return []

    def watch(self, service: str) -> Any:
        raise NotImplementedError


@pytest.mark.parametrize("scheme", ["", "Consul", "1ab", "a b", "a:"])
def test_a_scheme_must_be_one_a_url_can_have(scheme: str) -> None:
    with pytest.raises(ValueError, match="is not a URL scheme"):
        register_backend(scheme, open_fake)


def test_a_factory_must_be_callable_or_a_reference() -> None:
    with pytest.raises(TypeError, match="callable or 'module:attr'"):
        register_backend("fake", "tests.discovery.fake_backend")


def test_a_ttl_that_is_not_a_number_names_the_url() -> None:
    with pytest.raises(ValueError, match=r"'etcd://h:2379\?ttl=soon'.*ttl must be a number"):
        RegistryURL.parse("etcd://h:2379?ttl=soon").number("ttl", 10)


def test_pyproject_declares_the_built_in_backends_the_code_declares() -> None:
    """The entry points in pyproject.toml and the in-code declarations name the same factories,
    so an installed meshkit and a source checkout open the same backends."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["entry-points"][ENTRY_POINT_GROUP]
    assert set(declared) == {"memory", "meshkit", "etcd", "zk"}
    for scheme, value in declared.items():
        assert backends._table.declared[scheme] == value, scheme
        assert callable(importlib.metadata.EntryPoint(scheme, value, ENTRY_POINT_GROUP).load())


@pytest.mark.parametrize(
    ("url", "forgets", "ttl"),
    [
        ("memory://", False, None),
        ("meshkit://127.0.0.1:1?ttl=4", True, 4.0),
        ("etcd://127.0.0.1:1?ttl=4.5", False, 4),  # etcd leases are whole seconds
        ("zk://127.0.0.1:1?ttl=4", False, 4.0),  # the session timeout
    ],
)
async def test_every_backend_says_whether_it_forgets_and_its_ttl(url: str, forgets: bool, ttl: float | None) -> None:
    registry = open_registry(url)
    try:
        assert (registry.forgets_on_restart, registry.ttl) == (forgets, ttl)
    finally:
        await registry.close()
