"""NetnsLink's naming and addressing (pure; creating namespaces is tested by the netns scenario)."""

from __future__ import annotations

import pytest

from meshkit.testing.netns import NetnsLink


def test_links_whose_names_share_a_prefix_get_their_own_interfaces_and_subnets() -> None:
    a, b = NetnsLink("mk-faults-a"), NetnsLink("mk-faults-b")
    assert {a._host_if, a._ns_if}.isdisjoint({b._host_if, b._ns_if})
    assert a.outside != b.outside and a.inside != b.inside
    for link in (a, b):
        assert len(link._host_if) <= 15 and len(link._ns_if) <= 15  # IFNAMSIZ - 1
        assert link.outside.startswith("10.78.")


def test_the_inside_and_outside_addresses_share_one_slash_30() -> None:
    for name in ("a", "mk1234", "x" * 64):
        link = NetnsLink(name)
        *net, last = link.outside.split(".")
        assert link.inside == ".".join([*net, str(int(last) + 1)])
        assert int(last) % 4 == 1  # .1 and .2 of a /30, never its network or broadcast address


def test_an_explicit_subnet_is_10_77_n() -> None:
    link = NetnsLink("mk", subnet=5)
    assert (link.outside, link.inside) == ("10.77.5.1", "10.77.5.2")


@pytest.mark.parametrize("name", ["", "a b", "x" * 65, "../etc", "a/b", ".."])
def test_a_bad_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="namespace name"):
        NetnsLink(name)


@pytest.mark.parametrize("subnet", [0, 255, -1])
def test_a_bad_subnet_is_refused(subnet: int) -> None:
    with pytest.raises(ValueError, match="subnet"):
        NetnsLink("mk", subnet=subnet)
