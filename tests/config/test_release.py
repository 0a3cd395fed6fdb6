"""Gray release targeting (config/release.py): by id, zone, labels, or a stable percentage."""

from __future__ import annotations

import pytest

from meshkit.config.release import Identity, parse_labels, picks, share, status_key
from meshkit.errors import BadConfigRequest
from meshkit.policy.config import Release

A = Identity("a:1", zone="az1", labels={"canary": "true", "team": "x"})
B = Identity("b:2", zone="az2")


@pytest.mark.parametrize(
    ("release", "picked"),
    [
        (None, set()),
        (Release(), set()),
        (Release(instances=["b:2"]), {"b:2"}),
        (Release(zones=["az1"]), {"a:1"}),
        (Release(labels={"canary": "true"}), {"a:1"}),
        (Release(labels={"canary": "true", "team": "y"}), set()),
        (Release(percent=100), {"a:1", "b:2"}),
    ],
)
def test_a_release_picks_by_id_zone_labels_or_percent(release: Release | None, picked: set[str]) -> None:
    assert {w.instance for w in (A, B) if picks(release, w, "policy/order")} == picked


def test_a_percentage_is_stable_close_to_its_share_and_grows_by_adding() -> None:
    ids = [f"10.0.0.{i}:8000" for i in range(2000)]
    ten = {i for i in ids if picks(Release(percent=10), Identity(i), "policy/order")}
    assert 150 <= len(ten) <= 250
    assert ten == {i for i in ids if picks(Release(percent=10), Identity(i), "policy/order")}
    thirty = {i for i in ids if picks(Release(percent=30), Identity(i), "policy/order")}
    assert ten <= thirty
    assert all(0 <= share("k", i) < 100 for i in ids)


def test_labels_and_status_keys_are_checked_and_made_safe() -> None:
    assert parse_labels(" canary=true, team = x ") == {"canary": "true", "team": "x"}
    assert parse_labels("") == {}
    with pytest.raises(BadConfigRequest, match="name=value"):
        parse_labels("canary")
    assert status_key("policy/order", "host a/1") == "_status/policy/order/host_a_1"


def test_an_out_of_range_percent_is_a_policy_error() -> None:
    from meshkit.policy import PolicyError

    with pytest.raises(PolicyError, match="percent"):
        Release(percent=120)
