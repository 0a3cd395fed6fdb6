"""The revision log against a model: any sequence of puts and deletes, with or without
compare-and-set, leaves the current entries, each key's history and the changes since any
revision exactly as a plain list of writes says."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshkit.config.backend import Change
from meshkit.config.log import RevisionLog
from meshkit.errors import Compacted, Conflict

KEYS = st.sampled_from(["a", "a/b", "b", "policy/x", "policy/y"])
OPERATIONS = st.lists(
    st.tuples(st.sampled_from(["put", "delete"]), KEYS, st.binary(max_size=4), st.none() | st.integers(0, 12)),
    max_size=40,
)


@given(OPERATIONS)
def test_the_log_matches_a_list_of_writes(operations: list[tuple[str, str, bytes, int | None]]) -> None:
    log = RevisionLog()
    writes: list[Change] = []  # the model: every write that happened, in order
    for kind, key, value, expect in operations:
        current = {c.key: c for c in writes}.get(key)
        found = current.revision if current is not None and not current.deleted else 0
        try:
            change = log.plan_put(key, value, expect) if kind == "put" else log.plan_delete(key, expect)
        except Conflict as conflict:
            assert expect is not None and expect != found and conflict.current == found
            continue
        assert expect is None or expect == found
        if change is None:
            assert kind == "delete" and found == 0
            continue
        assert change.revision == len(writes) + 1
        log.apply(change)
        writes.append(change)
    latest = {c.key: c for c in writes}
    assert {e.key: (e.value, e.revision) for e in log.list("").entries} == {
        k: (c.value, c.revision) for k, c in latest.items() if not c.deleted
    }
    for prefix in ("", "a", "policy/"):
        for since in range(len(writes) + 1):
            assert log.since(prefix, since) == [c for c in writes[since:] if c.key.startswith(prefix)]
    for key in ("a", "b", "policy/x"):
        assert log.history(key) == [c for c in writes if c.key == key]


def test_a_change_must_come_after_the_last() -> None:
    log = RevisionLog()
    log.apply(Change("k", b"1", 1))
    with pytest.raises(ValueError, match="not after"):
        log.apply(Change("k", b"2", 1))


def test_watching_from_before_what_is_kept_says_compacted() -> None:
    log = RevisionLog()
    for revision in range(1, 7):
        log.apply(Change("k", b"%d" % revision, revision))
    log.compacted = 5
    with pytest.raises(Compacted, match="list the prefix again"):
        log.since("", 4)
    assert [c.revision for c in log.since("", 5)] == [6]


def test_watching_from_after_the_last_revision_says_the_store_lost_revisions() -> None:
    log = RevisionLog()
    log.apply(Change("k", b"1", 1))
    assert log.since("", 1) == []
    with pytest.raises(Compacted, match="it lost revisions"):
        log.since("", 2)  # a store that started again from 0 (a restart without persistence)
