"""The pure decisions of a transaction (tx/machine.py): the order of calls in a saga and a TCC,
the failure way, retries of UNKNOWN, and that a coordinator restarted from any logged point
reaches the same end (the state after every step is what a log would hold)."""

from __future__ import annotations

import random

import pytest

from meshkit.tx.machine import Mode, Op, Outcome, Status, Step, Transaction, saga, tcc

Script = dict[tuple[str, Op], list[Outcome]]


def drive(tx: Transaction, answer: Script, *, crash_at: int | None = None) -> tuple[Transaction, list[Step]]:
    """Run ``tx`` to its end, answering each step from ``answer`` (default DONE). The state after
    each change is what the log holds; ``crash_at=N``: the coordinator dies right after its N-th
    call was logged as started, before the answer was recorded, and a new one goes on from the
    log (so it asks that step again)."""
    calls: list[Step] = []
    for _ in range(1000):
        steps = tx.next_steps()
        if not steps:
            tx = tx.decided()
            if tx.status.finished or not tx.next_steps():
                return tx, calls
            continue
        for step in steps:
            tx = tx.started(step)
            calls.append(step)
            script = answer.get((step.branch, step.op))
            outcome = script.pop(0) if script else Outcome.DONE
            if crash_at is not None and len(calls) == crash_at:
                break  # the answer is lost with the coordinator; the log says "started"
            tx = tx.answered(step, outcome)
    raise AssertionError("the transaction did not end")


def test_a_saga_runs_its_actions_in_order_and_commits() -> None:
    tx, calls = drive(saga("g1", ["pay", "stock", "ship"]), {})
    assert tx.status is Status.COMMITTED
    assert calls == [Step("pay", Op.ACTION), Step("stock", Op.ACTION), Step("ship", Op.ACTION)]


def test_a_failed_saga_step_compensates_every_started_branch_in_reverse_the_failed_one_included() -> None:
    tx, calls = drive(saga("g1", ["pay", "stock", "ship"]), {("stock", Op.ACTION): [Outcome.FAILED]})
    assert tx.status is Status.ABORTED and tx.reason == "stock refused action"
    assert calls == [
        Step("pay", Op.ACTION),
        Step("stock", Op.ACTION),
        Step("stock", Op.COMPENSATE),
        Step("pay", Op.COMPENSATE),
    ]


def test_parallel_groups_run_together_and_are_compensated_together() -> None:
    tx0 = saga("g1", ["a", "b", "c"], groups=[0, 1, 1])
    assert tx0.next_steps() == [Step("a", Op.ACTION)]
    tx, calls = drive(tx0, {("c", Op.ACTION): [Outcome.FAILED]})
    assert tx.status is Status.ABORTED
    assert calls[1:3] == [Step("b", Op.ACTION), Step("c", Op.ACTION)]
    assert set(calls[3:5]) == {Step("b", Op.COMPENSATE), Step("c", Op.COMPENSATE)}
    assert calls[5] == Step("a", Op.COMPENSATE)


def test_unknown_answers_are_asked_again_and_compensations_never_give_up() -> None:
    script = {
        ("pay", Op.ACTION): [Outcome.UNKNOWN, Outcome.UNKNOWN],
        ("stock", Op.ACTION): [Outcome.FAILED],
        ("pay", Op.COMPENSATE): [Outcome.UNKNOWN, Outcome.FAILED, Outcome.UNKNOWN],
    }
    tx, calls = drive(saga("g1", ["pay", "stock"]), script)
    assert tx.status is Status.ABORTED
    assert calls.count(Step("pay", Op.ACTION)) == 3
    assert calls.count(Step("pay", Op.COMPENSATE)) == 4  # refused and unknown: asked again until done
    assert tx.attempts[("pay", Op.COMPENSATE)] == 4


def test_a_tcc_confirms_all_after_every_try_or_cancels_the_tried_ones() -> None:
    ok, calls = drive(tcc("t1", ["pay", "stock"]), {})
    assert ok.status is Status.COMMITTED
    assert calls == [Step("pay", Op.TRY), Step("stock", Op.TRY), Step("pay", Op.CONFIRM), Step("stock", Op.CONFIRM)]
    bad, calls = drive(tcc("t2", ["pay", "stock", "ship"]), {("stock", Op.TRY): [Outcome.FAILED]})
    assert bad.status is Status.ABORTED
    assert calls[2:] == [Step("stock", Op.CANCEL), Step("pay", Op.CANCEL)]  # ship was never tried
    confirm_retried, calls = drive(tcc("t3", ["pay"]), {("pay", Op.CONFIRM): [Outcome.FAILED, Outcome.UNKNOWN]})
    assert confirm_retried.status is Status.COMMITTED and calls.count(Step("pay", Op.CONFIRM)) == 3


def test_a_deadline_turns_a_transaction_going_forward_back_but_never_undoes_a_decision() -> None:
    tx = saga("g1", ["pay", "stock"])
    step = tx.next_steps()[0]
    tx = tx.started(step).answered(step, Outcome.UNKNOWN).timed_out()
    assert tx.status is Status.ABORTING and tx.next_steps() == [Step("pay", Op.COMPENSATE)]
    committing = tcc("t", ["pay"])
    committing = committing.answered(Step("pay", Op.TRY), Outcome.DONE)
    assert committing.status is Status.COMMITTING
    assert committing.timed_out().status is Status.COMMITTING


@pytest.mark.parametrize("mode", [Mode.SAGA, Mode.TCC])
def test_a_coordinator_restarted_after_any_call_ends_the_transaction_consistently(mode: Mode) -> None:
    rng = random.Random(16)
    outcomes = [Outcome.DONE, Outcome.DONE, Outcome.UNKNOWN, Outcome.FAILED]
    forward = Op.ACTION if mode is Mode.SAGA else Op.TRY
    back = Op.COMPENSATE if mode is Mode.SAGA else Op.CANCEL
    for case in range(200):
        ids = [f"b{i}" for i in range(rng.randint(1, 4))]
        script = {(b, forward): [rng.choice(outcomes) for _ in range(3)] for b in ids}
        start = saga(f"g{case}", ids) if mode is Mode.SAGA else tcc(f"g{case}", ids)
        for crash in [None, *range(1, 10)]:
            tx, calls = drive(start, {k: list(v) for k, v in script.items()}, crash_at=crash)
            assert tx.status.finished, (case, crash)
            # committed: every forward step done, nothing undone (and, for TCC, confirmed);
            # aborted: every branch whose forward step was ever called is undone
            for branch in tx.branches:
                if tx.status is Status.COMMITTED:
                    assert branch.has(forward) and not branch.has(back), (case, crash)
                    assert mode is Mode.SAGA or branch.has(Op.CONFIRM)
                else:
                    assert (forward in branch.started) == branch.has(back), (case, crash)
            if crash is not None and crash <= len(calls):
                assert calls.count(calls[crash - 1]) >= 2 or tx.status is Status.ABORTED, (case, crash)


def test_branch_ids_are_unique_and_groups_in_order() -> None:
    with pytest.raises(ValueError, match="unique"):
        saga("g", ["a", "a"])
    with pytest.raises(ValueError, match="in order"):
        saga("g", ["a", "b"], groups=[1, 0])
