"""A bank transfer record's life: which notice moves it forward and what that posts. Pure.

The bank notifies each incoming transfer (one ``record_id`` per app) as its status changes:
arrived (deduct_status 0), held for a deduction (6), deducted (1), and possibly reversed
(reverse_flag 1). Notices are retried, duplicated and reordered, so a record only moves
forward: AVAILABLE < FROZEN < DEDUCTED < REVERSED. A notice for the same or an earlier state
changes nothing, and a later state reached directly posts everything in between at once.

reverse_flag 2 (冲正) marks the bank's correcting entry itself, not a credit to us. The transfer it
corrects is notified under its own record_id with reverse_flag 1, and that record returns the
money; posting the correcting entry too would take the money back twice. So such a record is
stored as REVERSAL_NOTICE (the audit trail) and nothing is posted for it.

Money only moves out of what this credit still holds on the account, and never more than the
account has (customers may have spent it meanwhile): a shortfall is reported, not forced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from fundhub.bank_transfers.notification import TransferNotice
from fundhub.ledger.rules import (
    BANK_INFLOW,
    DEDUCTION_CLEARING,
    Balance,
    Bucket,
    JournalEntry,
    Posting,
    credit,
    debit,
    freeze,
    system_account,
)

ENTRY_KIND = "bank-transfer"
REF_TYPE = "bank_transfer_record"


class RecordState(StrEnum):
    AVAILABLE = "AVAILABLE"
    FROZEN = "FROZEN"
    DEDUCTED = "DEDUCTED"
    REVERSED = "REVERSED"
    REVERSAL_NOTICE = "REVERSAL_NOTICE"


# The forward order; REVERSAL_NOTICE is outside it (such a record never changes state).
RANK: dict[RecordState, int] = {
    RecordState.AVAILABLE: 0,
    RecordState.FROZEN: 1,
    RecordState.DEDUCTED: 2,
    RecordState.REVERSED: 3,
}
_BY_DEDUCT_STATUS = {
    "0": RecordState.AVAILABLE,
    "6": RecordState.FROZEN,
    "1": RecordState.DEDUCTED,
}


def target_state(notice: TransferNotice) -> RecordState:
    """The state a notice reports: reverse_flag first, else the deduction status."""
    if notice.reverse_flag == "2":
        return RecordState.REVERSAL_NOTICE
    if notice.reverse_flag == "1":
        return RecordState.REVERSED
    return _BY_DEDUCT_STATUS[notice.deduct_status]


@dataclass(frozen=True)
class RecordPosition:
    """Where a record stands and how much of its credit is where (the record's money columns)."""

    state: RecordState
    held_available: int  # of this credit, still to be found in available
    held_frozen: int  # of this credit, frozen
    deducted_amount: int
    reversed_amount: int
    trans_amount: int
    account_id: str
    currency: str


@dataclass(frozen=True)
class Decision:
    position: RecordPosition | None  # the new position; None when nothing changes
    entry: JournalEntry | None  # None when nothing is posted
    outcome: Literal["applied", "stale"]
    note: str


def decide(
    current: RecordPosition | None,
    notice: TransferNotice,
    account: Balance,
    entry_id: str,
) -> Decision:
    """What a verified notice does to its record and to the ledger.

    ``account`` is the balance of the account the notice credits, as it is now (under the
    caller's lock); the entry produced always applies to it. Raises ValueError when the
    account is held in another currency than the notice: a configuration error, not a stale
    notice, so it should not be swallowed.
    """
    target = target_state(notice)
    if current is None:
        if account.currency != notice.currency:
            raise ValueError(
                f"record {notice.record_id} in {notice.currency} for account"
                f" {account.account_id} held in {account.currency}"
            )
        return _first_sight(notice, account, entry_id, target)

    contradiction = _contradiction(current, notice, account)
    if contradiction:
        return Decision(None, None, "stale", contradiction)
    if RecordState.REVERSAL_NOTICE in (target, current.state):
        if target == current.state:
            return Decision(None, None, "stale", f"{target} arrived again")
        return Decision(
            None, None, "stale", f"{target} arrived for a record in state {current.state}"
        )
    if RANK[target] <= RANK[current.state]:
        return Decision(None, None, "stale", f"{target} arrived, record already {current.state}")
    walk = _Walk.resume(current, account)
    walk.step_to(target)
    return walk.decision(notice, entry_id, f"{current.state} -> {target}")


def _first_sight(
    notice: TransferNotice, account: Balance, entry_id: str, target: RecordState
) -> Decision:
    reversal = target is RecordState.REVERSAL_NOTICE
    # A record as it starts: the notice's amount, nothing of it held, deducted or reversed yet.
    position = RecordPosition(
        state=RecordState.REVERSAL_NOTICE if reversal else RecordState.AVAILABLE,
        held_available=0,
        held_frozen=0,
        deducted_amount=0,
        reversed_amount=0,
        trans_amount=notice.trans_amount,
        account_id=account.account_id,
        currency=notice.currency,
    )
    if reversal:
        note = "new -> REVERSAL_NOTICE: the bank's correcting entry, recorded, nothing posted"
        return Decision(position, None, "applied", note)
    walk = _Walk.resume(position, account)
    walk.credit()
    if target is not RecordState.AVAILABLE:
        walk.step_to(target)
    return walk.decision(notice, entry_id, f"new -> {target}")


def _contradiction(current: RecordPosition, notice: TransferNotice, account: Balance) -> str:
    """Why a later notice disagrees with the stored record ("" when it does not)."""
    problems: list[str] = []
    if notice.trans_amount != current.trans_amount:
        problems.append(f"trans_amount {notice.trans_amount} != stored {current.trans_amount}")
    if notice.currency != current.currency:
        problems.append(f"currency {notice.currency} != stored {current.currency}")
    if account.account_id != current.account_id:
        problems.append(f"account {account.account_id} != stored {current.account_id}")
    if not problems:
        return ""
    return "contradicts the stored record, nothing moved: " + "; ".join(problems)


@dataclass
class _Walk:
    """A record and its account moving forward inside one journal entry."""

    state: RecordState
    held_available: int
    held_frozen: int
    deducted_amount: int
    reversed_amount: int
    trans_amount: int
    account_id: str
    currency: str
    available: int  # the account's buckets as the entry's postings so far leave them
    frozen: int
    allow_negative: bool
    postings: list[Posting] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def resume(cls, position: RecordPosition, account: Balance) -> _Walk:
        return cls(
            state=position.state,
            held_available=position.held_available,
            held_frozen=position.held_frozen,
            deducted_amount=position.deducted_amount,
            reversed_amount=position.reversed_amount,
            trans_amount=position.trans_amount,
            account_id=position.account_id,
            currency=position.currency,
            available=account.available,
            frozen=account.frozen,
            allow_negative=account.allow_negative,
        )

    def _takeable(self, wanted: int, have: int) -> int:
        if self.allow_negative:
            return wanted
        return max(0, min(wanted, have))

    def _post(self, postings: tuple[Posting, ...]) -> None:
        for posting in postings:
            if posting.account_id == self.account_id:
                if posting.bucket is Bucket.AVAILABLE:
                    self.available += posting.amount
                elif posting.bucket is Bucket.FROZEN:
                    self.frozen += posting.amount
        self.postings.extend(postings)

    def credit(self) -> None:
        inflow = system_account(BANK_INFLOW, self.currency)
        self._post(credit(self.account_id, self.currency, self.trans_amount, source=inflow))
        self.held_available = self.trans_amount

    def step_to(self, target: RecordState) -> None:
        if target is RecordState.FROZEN:
            self._freeze()
        elif target is RecordState.DEDUCTED:
            self.deducted_amount += self._release(DEDUCTION_CLEARING)
            self._note_shortfall("deducted", self.deducted_amount)
        elif target is RecordState.REVERSED:
            self.reversed_amount += self._release(BANK_INFLOW)
            self._note_shortfall("reversed", self.reversed_amount)
        else:  # pragma: no cover - decide() routes only forward states here
            raise ValueError(f"no forward step to {target}")
        self.state = target

    def _freeze(self) -> None:
        amount = self._takeable(self.held_available, self.available)
        self._post(freeze(self.account_id, self.currency, amount))
        self.held_available -= amount
        self.held_frozen += amount
        if self.held_available:
            self.notes.append(
                f"shortfall: froze {self.held_frozen} of {self.trans_amount},"
                f" {self.held_available} no longer available"
            )

    def _release(self, purpose: str) -> int:
        """Send what the credit still holds (frozen, then available) to a system account."""
        target = system_account(purpose, self.currency)
        from_frozen = self._takeable(self.held_frozen, self.frozen)
        self._post(
            debit(self.account_id, self.currency, from_frozen, target=target, bucket=Bucket.FROZEN)
        )
        from_available = self._takeable(self.held_available, self.available)
        self._post(debit(self.account_id, self.currency, from_available, target=target))
        self.held_frozen = 0
        self.held_available = 0
        return from_frozen + from_available

    def _note_shortfall(self, done: str, amount: int) -> None:
        if amount < self.trans_amount:
            self.notes.append(
                f"shortfall: {done} {amount} of {self.trans_amount}, the rest was no longer held"
            )

    def decision(self, notice: TransferNotice, entry_id: str, transition: str) -> Decision:
        position = RecordPosition(
            state=self.state,
            held_available=self.held_available,
            held_frozen=self.held_frozen,
            deducted_amount=self.deducted_amount,
            reversed_amount=self.reversed_amount,
            trans_amount=self.trans_amount,
            account_id=self.account_id,
            currency=self.currency,
        )
        note = "; ".join([transition, *self.notes])
        entry = None
        if self.postings:
            entry = JournalEntry(
                entry_id=entry_id,
                kind=ENTRY_KIND,
                ref_type=REF_TYPE,
                ref_id=notice.record_id,
                postings=tuple(self.postings),
                description=f"bank transfer record {notice.record_id}: {transition}",
            )
        return Decision(position, entry, "applied", note)
