"""What may be done to a discrepancy, by whom, and what it becomes. Pure.

A discrepancy is resolved by a ledger adjustment under four eyes: one operator proposes it,
another approves it, and nobody approves their own. It may instead be carried over (looked at
again later), written off with a reason, or re-opened (a proposal withdrawn, a write-off or a
carry-over undone). A resolved one stays resolved: its adjustment is in the ledger, and undoing
it is another adjustment on another discrepancy, not an edit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

MAX_REASON = 500
MAX_ADJUSTMENT_FEN = 10**15
ACCOUNT_ID = re.compile(r"^[A-Za-z0-9:._-]{1,64}$")


class State(StrEnum):
    OPEN = "OPEN"
    ADJUSTMENT_PROPOSED = "ADJUSTMENT_PROPOSED"
    RESOLVED = "RESOLVED"
    CARRIED_OVER = "CARRIED_OVER"
    WRITTEN_OFF = "WRITTEN_OFF"


class Action(StrEnum):
    PROPOSE = "PROPOSE"
    APPROVE = "APPROVE"
    CARRY_OVER = "CARRY_OVER"
    WRITE_OFF = "WRITE_OFF"
    REOPEN = "REOPEN"


_MOVES: dict[Action, tuple[frozenset[State], State]] = {
    Action.PROPOSE: (frozenset({State.OPEN}), State.ADJUSTMENT_PROPOSED),
    Action.APPROVE: (frozenset({State.ADJUSTMENT_PROPOSED}), State.RESOLVED),
    Action.CARRY_OVER: (frozenset({State.OPEN}), State.CARRIED_OVER),
    Action.WRITE_OFF: (frozenset({State.OPEN, State.CARRIED_OVER}), State.WRITTEN_OFF),
    Action.REOPEN: (
        frozenset({State.ADJUSTMENT_PROPOSED, State.CARRIED_OVER, State.WRITTEN_OFF}),
        State.OPEN,
    ),
}


class ActionRefused(Exception):
    """``str(exc)`` is safe to show the operator."""


class StateConflict(ActionRefused):
    pass


class OwnApproval(ActionRefused):
    pass


class InvalidAction(ActionRefused):
    pass


@dataclass(frozen=True, slots=True)
class Adjustment:
    """Move ``amount_fen`` (signed: + credits the account) on ``account_id``'s available bucket,
    against the reconciliation adjustments account: one balanced entry."""

    account_id: str
    amount_fen: int

    def __post_init__(self) -> None:
        if not ACCOUNT_ID.fullmatch(self.account_id):
            raise InvalidAction("account: 1 to 64 characters of A-Z a-z 0-9 : . _ -")
        if (
            isinstance(self.amount_fen, bool)
            or not isinstance(self.amount_fen, int)
            or self.amount_fen == 0
            or abs(self.amount_fen) > MAX_ADJUSTMENT_FEN
        ):
            raise InvalidAction("amount: a non-zero integer number of fen")


def check_reason(reason: str, *, required: bool) -> str:
    text = reason.strip()
    if required and not text:
        raise InvalidAction("reason: required")
    if len(text) > MAX_REASON or any(ord(c) < 32 for c in text):
        raise InvalidAction(f"reason: at most {MAX_REASON} printable characters")
    return text


def next_state(state: State, action: Action, actor: str, proposed_by: str | None = None) -> State:
    """The state ``action`` leads to, or the refusal. ``proposed_by`` is who proposed the
    adjustment being approved."""
    if not actor.strip():
        raise InvalidAction("actor: required")
    allowed, target = _MOVES[action]
    if state not in allowed:
        raise StateConflict(f"a {state} discrepancy cannot be {_PAST[action]}")
    if action is Action.APPROVE and (proposed_by is None or proposed_by == actor):
        raise OwnApproval("nobody approves their own adjustment: another operator must")
    return target


_PAST = {
    Action.PROPOSE: "given a proposal",
    Action.APPROVE: "approved",
    Action.CARRY_OVER: "carried over",
    Action.WRITE_OFF: "written off",
    Action.REOPEN: "re-opened",
}
