"""The holder's view of its lease: renew at a third of the TTL, give up before the engine does."""

from __future__ import annotations

import pytest

from meshkit.coord.lease import DRIFT, RENEW_FRACTION, RETRY_FRACTION, LeaseSchedule


def test_a_lease_is_renewed_at_a_third_of_its_ttl_and_valid_a_little_less_than_the_ttl() -> None:
    lease = LeaseSchedule(ttl=9.0, granted_at=100.0)
    assert lease.next_attempt == pytest.approx(100.0 + 9.0 * RENEW_FRACTION)
    assert lease.valid_until == pytest.approx(100.0 + 9.0 * (1 - DRIFT))
    assert lease.valid_until < 109.0  # the engine's lease (counted from later) outlives the holder's view


def test_a_renewal_counts_from_when_it_was_sent() -> None:
    lease = LeaseSchedule(ttl=9.0, granted_at=100.0)
    lease.renewed(sent_at=103.0)
    assert lease.valid_until == pytest.approx(103.0 + 9.0 * (1 - DRIFT))
    assert lease.next_attempt == pytest.approx(106.0)


@pytest.mark.parametrize("failures", [1, 2, 5])
def test_failed_renewals_are_retried_sooner_but_never_past_the_lease(failures: int) -> None:
    lease = LeaseSchedule(ttl=10.0, granted_at=0.0)
    now = lease.next_attempt
    for _ in range(failures):
        lease.failed(now)
        assert lease.next_attempt <= lease.valid_until
        assert lease.next_attempt == pytest.approx(min(now + 10.0 * RETRY_FRACTION, lease.valid_until))
        now = lease.next_attempt
    assert lease.failures == failures
    lease.renewed(now)
    assert lease.failures == 0


def test_the_lease_expires_at_its_valid_until_and_not_before() -> None:
    lease = LeaseSchedule(ttl=1.0, granted_at=0.0)
    assert not lease.expired(lease.valid_until - 1e-6)
    assert lease.expired(lease.valid_until)
    assert lease.time_left(lease.valid_until + 5) == 0.0
