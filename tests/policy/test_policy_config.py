"""A policy is checked when it is read or built, not when a call first needs it: a wildcard switch,
shedding values that contradict each other and a shared limit without Redis are PolicyErrors; a
method rule can override one field of its service's rule (the burst) and inherit the rest; and a
policy file's switches reach a server that was given its own switch set."""

from __future__ import annotations

import pytest

from meshkit import Server
from meshkit.policy import ClientRule, Limit, Policy, PolicyConfig, PolicyError, ServerRule, Shedding, Switches
from meshkit.policy.config import parse, resolve
from tests.policy.services import Stock


def test_a_wildcard_switch_is_a_policy_error_at_parse_time() -> None:
    with pytest.raises(PolicyError):
        parse(b'[switches]\n"stock.*" = true\n')


def test_bad_shedding_values_are_a_policy_error_at_parse_time() -> None:
    with pytest.raises(PolicyError):
        parse(b"[shedding]\nmin_limit = 50\n")  # > initial_limit: ShedderConfig would raise ValueError later


def test_a_shared_limit_without_redis_is_refused_when_the_policy_is_built() -> None:
    rule = ServerRule(limit=Limit(rate=1, shared=True))
    with pytest.raises(PolicyError):
        Policy(PolicyConfig(server={"stock.peek": rule}), switches=Switches())


def test_a_method_rule_can_change_only_the_burst_of_a_service_limit() -> None:
    config = parse(b'[client."stock.*".limit]\nrate = 10\n[client."stock.peek".limit]\nburst = 5\n')
    limit = resolve(config.client, "stock.peek", ClientRule).limit
    assert limit is not None and (limit.rate, limit.burst) == (10, 5)


def test_policy_file_switches_reach_a_server_given_its_own_switches() -> None:
    from meshkit.policy import process_switches

    p = Policy(PolicyConfig(shedding=Shedding(enabled=False), switches={"stock.reserve": True}))
    try:
        server = Server([Stock()], policy=p, switches=Switches())
        assert "stock.reserve" in server.switches
    finally:
        process_switches().set("stock.reserve", False)  # a policy file switches process-wide: undo it
