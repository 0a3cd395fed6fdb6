"""The decisions of a distributed transaction, without I/O: what to call next, and what the
transaction is once a call has answered. The coordinator (an asyncio shell around this) writes
each decision to its log *before* acting on it, so a restarted coordinator that reads the log
back reaches the same next step (issue 17: crash at every step).

Two modes, as DTM and Seata name them:

- **Saga**: the branches' actions run in order (a group of branches runs at once); when one
  fails for good, every branch that was started is compensated, in reverse order, the failed one
  included (its action may have done part of its work; the participant's barrier makes a
  compensation of nothing harmless).
- **TCC**: ``try`` runs on every branch in order; if all succeed the transaction is decided
  *commit* and every branch is confirmed, else it is decided *rollback* and every branch that was
  tried is cancelled (the failed one included, for the same reason).

An answer is one of three :class:`Outcome`\\ s: ``DONE``, ``FAILED`` (the participant refused for
good: insufficient funds) or ``UNKNOWN`` (a timeout, a crash: the call may or may not have run).
Forward steps (a saga's action, a try) are retried on UNKNOWN until the transaction's deadline,
then it goes the failure way; the second phase (compensate, confirm, cancel) is retried until it
is DONE, for ever: it must not fail, and a participant that refuses it is a bug to be seen (the
coordinator counts and reports such a branch), never a reason to leave the rest undone.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace


class Mode(enum.Enum):
    SAGA = "saga"
    TCC = "tcc"


class Op(enum.Enum):
    """What is called on a branch."""

    ACTION = "action"  # saga, forward
    COMPENSATE = "compensate"  # saga, backward
    TRY = "try"  # tcc, phase one
    CONFIRM = "confirm"  # tcc, phase two (commit)
    CANCEL = "cancel"  # tcc, phase two (rollback)


FORWARD = {Op.ACTION, Op.TRY}


class Outcome(enum.Enum):
    DONE = "done"
    FAILED = "failed"
    UNKNOWN = "unknown"


class Status(enum.Enum):
    """Where a transaction is. ``SUBMITTED``: going forward; ``COMMITTING``/``ABORTING``: the
    decision is made (and logged), phase two runs; ``COMMITTED``/``ABORTED``: finished."""

    SUBMITTED = "submitted"
    COMMITTING = "committing"
    ABORTING = "aborting"
    COMMITTED = "committed"
    ABORTED = "aborted"

    @property
    def finished(self) -> bool:
        return self in (Status.COMMITTED, Status.ABORTED)


@dataclass(frozen=True, slots=True)
class Branch:
    """One participant's part: its place in the order (``group``: branches of one group run at
    once) and the outcome of each op called on it so far."""

    id: str
    group: int
    done: frozenset[Op] = frozenset()
    started: frozenset[Op] = frozenset()

    def has(self, op: Op) -> bool:
        return op in self.done


@dataclass(frozen=True, slots=True)
class Step:
    """Call ``op`` on branch ``branch``."""

    branch: str
    op: Op


@dataclass(frozen=True, slots=True)
class Transaction:
    gid: str
    mode: Mode
    branches: tuple[Branch, ...]
    status: Status = Status.SUBMITTED
    #: Why the transaction went the failure way (the first refusal, or the deadline).
    reason: str | None = None
    attempts: dict[tuple[str, Op], int] = field(default_factory=dict, compare=False)

    # -- what to call now --------------------------------------------------------------------
    def next_steps(self) -> list[Step]:
        """The calls to make now (empty: finished, or waiting for answers already asked for).
        Forward: the first group not yet done entirely; backward: the latest started group not
        yet compensated or cancelled; commit: every branch not yet confirmed."""
        if self.status is Status.SUBMITTED:
            forward = Op.ACTION if self.mode is Mode.SAGA else Op.TRY
            for group in self._groups():
                pending = [b for b in group if not b.has(forward)]
                if pending:
                    return [Step(b.id, forward) for b in pending]
            return []
        if self.status is Status.COMMITTING:
            if self.mode is Mode.SAGA:
                return []
            return [Step(b.id, Op.CONFIRM) for b in self.branches if not b.has(Op.CONFIRM)]
        if self.status is Status.ABORTING:
            back = Op.COMPENSATE if self.mode is Mode.SAGA else Op.CANCEL
            forward = Op.ACTION if self.mode is Mode.SAGA else Op.TRY
            for group in reversed(self._groups()):
                pending = [b for b in group if forward in b.started and not b.has(back)]
                if pending:
                    return [Step(b.id, back) for b in pending]
            return []
        return []

    def decided(self) -> Transaction:
        """The status once no step is left: forward done -> commit (a saga is committed at once,
        a TCC goes on to confirm), phase two done -> finished."""
        if self.next_steps():
            return self
        if self.status is Status.SUBMITTED:
            return replace(self, status=Status.COMMITTED if self.mode is Mode.SAGA else Status.COMMITTING)
        if self.status is Status.COMMITTING:
            return replace(self, status=Status.COMMITTED)
        if self.status is Status.ABORTING:
            return replace(self, status=Status.ABORTED)
        return self

    # -- what an answer changes --------------------------------------------------------------
    def started(self, step: Step) -> Transaction:
        """``step`` is about to be called (logged first: a recovered coordinator compensates a
        branch whose action may have run, even if no answer was recorded)."""
        branches = tuple(replace(b, started=b.started | {step.op}) if b.id == step.branch else b for b in self.branches)
        attempts = dict(self.attempts)
        attempts[(step.branch, step.op)] = attempts.get((step.branch, step.op), 0) + 1
        return replace(self, branches=branches, attempts=attempts)

    def answered(self, step: Step, outcome: Outcome, *, reason: str | None = None) -> Transaction:
        """The transaction once ``step`` answered ``outcome``. A forward step that FAILED turns
        it to the failure way; UNKNOWN changes nothing (the step is asked again); DONE records it."""
        if outcome is Outcome.DONE:
            branches = tuple(replace(b, done=b.done | {step.op}) if b.id == step.branch else b for b in self.branches)
            return replace(self, branches=branches).decided()
        if outcome is Outcome.FAILED and step.op in FORWARD and self.status is Status.SUBMITTED:
            return replace(self, status=Status.ABORTING, reason=reason or f"{step.branch} refused {step.op.value}")
        return self  # UNKNOWN, or a refused second-phase step: asked again

    def timed_out(self) -> Transaction:
        """The transaction's deadline passed: going forward, it takes the failure way; a decision
        already made is carried out regardless (phase two never gives up)."""
        if self.status is Status.SUBMITTED:
            return replace(
                self, status=Status.ABORTING, reason=self.reason or "timed out before every branch succeeded"
            )
        return self

    def _groups(self) -> list[list[Branch]]:
        groups: dict[int, list[Branch]] = {}
        for branch in self.branches:
            groups.setdefault(branch.group, []).append(branch)
        return [groups[g] for g in sorted(groups)]


def saga(gid: str, branch_ids: list[str], groups: list[int] | None = None) -> Transaction:
    """A new saga over ``branch_ids`` in order (``groups``: each branch's group; default one each)."""
    return _new(gid, Mode.SAGA, branch_ids, groups)


def tcc(gid: str, branch_ids: list[str]) -> Transaction:
    return _new(gid, Mode.TCC, branch_ids, None)


def _new(gid: str, mode: Mode, ids: list[str], groups: list[int] | None) -> Transaction:
    if len(set(ids)) != len(ids):
        raise ValueError(f"transaction {gid}: branch ids must be unique, got {ids}")
    if groups is not None and (len(groups) != len(ids) or groups != sorted(groups)):
        raise ValueError(f"transaction {gid}: one group per branch, in order, got {groups}")
    return Transaction(gid, mode, tuple(Branch(b, groups[i] if groups else i) for i, b in enumerate(ids)))
