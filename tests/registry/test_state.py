"""The registry's leases, driven by a number clock (self-preservation: test_preservation.py)."""

from __future__ import annotations

import pytest

from meshkit.discovery import Instance
from meshkit.registry.state import RegistryState


def inst(n: int, service: str = "s") -> Instance:
    return Instance(service=service, host="127.0.0.1", port=7000 + n, id=f"i{n}")


def test_lease_expires_after_ttl_not_before() -> None:
    s = RegistryState()
    lease = s.register(inst(1), ttl=10, now=0)
    assert s.evict(9.999) == []
    assert [i.id for i in s.evict(10.0)] == ["i1"]
    assert s.snapshot("s") == []
    assert not s.renew(lease, 11)  # unknown now: the instance must register again


def test_renewals_keep_it() -> None:
    s = RegistryState()
    lease = s.register(inst(1), ttl=10, now=0)
    for t in range(1, 100, 3):
        assert s.renew(lease, t)
        assert s.evict(t) == []
    assert len(s.snapshot("s")) == 1


def test_reregistering_replaces_and_deregister_removes() -> None:
    s = RegistryState()
    s.register(inst(1), ttl=10, now=0)
    s.register(inst(1), ttl=10, now=1)
    assert len(s.leases) == 1
    rev = s.revision
    assert s.deregister("i1") is not None and s.revision == rev + 1
    assert s.deregister("i1") is None
    with pytest.raises(ValueError):
        s.register(inst(2), ttl=0, now=0)


def test_snapshot_is_per_service_and_sorted() -> None:
    s = RegistryState()
    s.register(inst(2), ttl=10, now=0)
    s.register(inst(1), ttl=10, now=0)
    s.register(inst(3, "other"), ttl=10, now=0)
    assert [i.id for i in s.snapshot("s")] == ["i1", "i2"]
    assert s.services() == ["other", "s"]


def test_lease_ids_do_not_repeat_across_restarts() -> None:
    first = RegistryState().register(inst(1), ttl=10, now=0)
    second = RegistryState().register(inst(2), ttl=10, now=0)  # a restarted registry
    assert first != second
