"""A payout's life and what each step posts to the ledger. Pure: the worker does the I/O.

    PROCESSING -> SUCCESS | FAILED,   SUCCESS -> RETURNED

Accepting a payout freezes its amount on the payer account (or fails it, posting nothing, when
the money is not there). The bank's reports then settle it: SUCCESS sends the frozen amount to
the bank payout clearing account, FAILED releases it, RETURNED (the bank paid and got the money
back) returns it from clearing to the payer's available balance.

The bank's reports are duplicated, late and reordered, so a state only moves forward and a report
that does not move it is "stale": it changes nothing. A report contradicting a final state (SUCCESS
for a FAILED payout) is stale too, but raises ``alert``: money may be wrong and a person must look.
A report about another amount, transaction or request is "rejected" and never moves money.

A RETURNED report for a payout still PROCESSING means the SUCCESS report is late or lost; the bank
has paid and been refunded, so the payout goes straight to RETURNED, posting both steps in one
entry. Dropping it as stale would leave the money in clearing, since the bank sends it only once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal

from fundhub.common.errors import ErrorCode
from fundhub.ledger.rules import (
    Balance,
    Bucket,
    InsufficientFunds,
    JournalEntry,
    Posting,
    apply_entry,
    credit,
    debit,
    freeze,
    system_account,
    unfreeze,
)
from fundhub.payouts.bank import BankStatus, payee_invalid
from fundhub.payouts.bank_results import BankResult

ENTRY_KIND = "payout"
REF_TYPE = "payout"
BANK_PAYOUT_CLEARING = "bank-payout-clearing"

# Wire error codes of failed payouts (the table is fundhub.common.errors.ErrorCode).
INVALID_PARAMETER = ErrorCode.INVALID_PARAMETER.code
INSUFFICIENT_FUNDS = ErrorCode.INSUFFICIENT_FUNDS.code
TIMEOUT = ErrorCode.TIMEOUT.code
RETURNED = ErrorCode.RETURNED.code
BANK_REJECTED = ErrorCode.BANK_REJECTED.code
PAYEE_INVALID = ErrorCode.PAYEE_INVALID.code


class PayoutState(StrEnum):
    PROCESSING = "PROCESSING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    RETURNED = "RETURNED"

    @property
    def biz_code(self) -> str:
        """The wire ``bizCode``: a returned payout shows FAILED (with errorCode E014_RETURNED)."""
        return "FAILED" if self is PayoutState.RETURNED else self.value

    @property
    def is_final(self) -> bool:
        """Final for the client (its callback is due); a SUCCESS can still be RETURNED later."""
        return self is not PayoutState.PROCESSING


@dataclass(frozen=True)
class Payout:
    pay_id: str
    payer_account_id: str
    currency: str
    amount: int  # minor units, > 0
    state: PayoutState
    error_code: str | None = None
    message: str | None = None
    bank_txn_id: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int) or self.amount <= 0:
            raise ValueError("payout amount must be a positive integer of minor units")
        object.__setattr__(self, "state", PayoutState(self.state))


Outcome = Literal["applied", "stale", "rejected"]


@dataclass(frozen=True)
class Transition:
    """What one event does: the payout's new state and the entry to post with it.

    ``payout`` is None when nothing changes; ``entry`` is None when nothing is posted (a payout
    failed on acceptance has a new payout and no entry). ``alert`` marks what a person must see.
    """

    payout: Payout | None
    entry: JournalEntry | None
    outcome: Outcome
    note: str
    alert: bool = False


def clearing_account(currency: str) -> str:
    return system_account(BANK_PAYOUT_CLEARING, currency)


def failure_code(reason: str | None) -> str:
    """E016_PAYEE_INVALID when the bank's reason is about the payee's account, else E015."""
    return PAYEE_INVALID if payee_invalid(reason) else BANK_REJECTED


def accept(pay_id: str, payer: Balance, amount: int, currency: str, entry_id: str) -> Transition:
    """A new payout: freeze its amount on ``payer`` (its balance now, under the caller's lock).

    Not enough available: FAILED E004_INSUFFICIENT_FUNDS, nothing posted. The payer account held
    in another currency: FAILED E001, nothing posted.
    """
    payout = Payout(pay_id, payer.account_id, currency, amount, PayoutState.PROCESSING)
    if currency != payer.currency:
        failed = _failed(payout, INVALID_PARAMETER, "currency does not match the payer account")
        return Transition(failed, None, "applied", f"new -> FAILED: payer holds {payer.currency}")
    entry = _entry(payout, entry_id, freeze(payer.account_id, currency, amount), "freeze")
    try:
        apply_entry({payer.account_id: payer}, entry)
    except InsufficientFunds:
        failed = _failed(payout, INSUFFICIENT_FUNDS, ErrorCode.INSUFFICIENT_FUNDS.default_message)
        note = f"new -> FAILED: available {payer.available} < {amount}"
        return Transition(failed, None, "applied", note)
    return Transition(payout, entry, "applied", f"new -> PROCESSING: froze {amount}")


def settle(payout: Payout, result: BankResult, entry_id: str) -> Transition:
    """What a report of the bank does to ``payout`` (see the module's docstring)."""
    mismatch = _mismatch(payout, result)
    if mismatch:
        return Transition(None, None, "rejected", f"nothing moved: {mismatch}", alert=True)
    state, status = payout.state, result.status
    bank_txn_id = payout.bank_txn_id or result.bank_txn_id
    seen = f"{status} for a payout {state}"

    if state is PayoutState.PROCESSING:
        if status is BankStatus.PROCESSING:
            if payout.bank_txn_id is None and result.bank_txn_id is not None:
                moved = replace(payout, bank_txn_id=result.bank_txn_id)
                return Transition(moved, None, "applied", f"bank txn {result.bank_txn_id} noted")
            return Transition(None, None, "stale", f"{seen}: still processing")
        if status is BankStatus.SUCCESS:
            moved = replace(payout, state=PayoutState.SUCCESS, bank_txn_id=bank_txn_id)
            entry = _entry(payout, entry_id, _pay(payout), "paid")
            return Transition(moved, entry, "applied", "PROCESSING -> SUCCESS")
        if status is BankStatus.FAILED:
            moved = _failed(payout, failure_code(result.reason), _reason(result), bank_txn_id)
            entry = _entry(payout, entry_id, _release(payout), "failed, released")
            return Transition(moved, entry, "applied", "PROCESSING -> FAILED")
        moved = _returned(payout, result, bank_txn_id)
        postings = _pay(payout) + _return(payout)
        entry = _entry(payout, entry_id, postings, "paid and returned")
        note = "PROCESSING -> RETURNED: the SUCCESS report is late or lost; posted both steps"
        return Transition(moved, entry, "applied", note)

    if state is PayoutState.SUCCESS and status is BankStatus.RETURNED:
        moved = _returned(payout, result, bank_txn_id)
        entry = _entry(payout, entry_id, _return(payout), "returned")
        return Transition(moved, entry, "applied", "SUCCESS -> RETURNED")

    if status.value == state.value:
        return Transition(None, None, "stale", f"{seen}: duplicate")
    if _contradicts(state, status):
        note = f"{seen}: contradicts the recorded outcome, nothing moved; investigate"
        return Transition(None, None, "stale", note, alert=True)
    return Transition(None, None, "stale", f"{seen}: late")


def time_out(payout: Payout, entry_id: str) -> Transition:
    """The bank confirmed it never received the payout: FAILED E003_TIMEOUT, amount released.

    Only for that confirmation (a status query answering not found). A bank that merely does not
    answer in time leaves the payout PROCESSING: its result is unknown, and never guessed.
    """
    if payout.state is not PayoutState.PROCESSING:
        return Transition(None, None, "stale", f"time-out for a payout {payout.state}")
    moved = _failed(payout, TIMEOUT, "the bank never received the payout")
    entry = _entry(payout, entry_id, _release(payout), "never received by the bank, released")
    return Transition(moved, entry, "applied", "PROCESSING -> FAILED: bank never received it")


# --- internals -------------------------------------------------------------------------------

# Reports that cannot follow the recorded state: the bank said one thing, then another.
_CONTRADICTIONS: frozenset[tuple[PayoutState, BankStatus]] = frozenset(
    {
        (PayoutState.SUCCESS, BankStatus.FAILED),
        (PayoutState.FAILED, BankStatus.SUCCESS),
        (PayoutState.FAILED, BankStatus.RETURNED),
        (PayoutState.RETURNED, BankStatus.FAILED),
    }
)


def _contradicts(state: PayoutState, status: BankStatus) -> bool:
    return (state, status) in _CONTRADICTIONS


def _mismatch(payout: Payout, result: BankResult) -> str:
    """Why a report is not about this payout as we know it ("" when it is)."""
    problems: list[str] = []
    if result.bank_request_id is not None and result.bank_request_id != payout.pay_id:
        problems.append(f"bank_request_id {result.bank_request_id} != {payout.pay_id}")
    if result.amount is not None and result.amount != payout.amount:
        problems.append(f"amount {result.amount} != {payout.amount}")
    if (
        payout.bank_txn_id is not None
        and result.bank_txn_id is not None
        and result.bank_txn_id != payout.bank_txn_id
    ):
        problems.append(f"bank_txn_id {result.bank_txn_id} != {payout.bank_txn_id}")
    return "; ".join(problems)


def _reason(result: BankResult) -> str:
    return result.reason or "the bank refused the payout"


def _failed(payout: Payout, code: str, message: str, bank_txn_id: str | None = None) -> Payout:
    return replace(
        payout,
        state=PayoutState.FAILED,
        error_code=code,
        message=message,
        bank_txn_id=bank_txn_id or payout.bank_txn_id,
    )


def _returned(payout: Payout, result: BankResult, bank_txn_id: str | None) -> Payout:
    return replace(
        payout,
        state=PayoutState.RETURNED,
        error_code=RETURNED,
        message=result.reason or "the bank returned the payout",
        bank_txn_id=bank_txn_id,
    )


def _pay(payout: Payout) -> tuple[Posting, ...]:
    """Frozen on the payer -> the bank payout clearing account."""
    clearing = clearing_account(payout.currency)
    return debit(
        payout.payer_account_id,
        payout.currency,
        payout.amount,
        target=clearing,
        bucket=Bucket.FROZEN,
    )


def _release(payout: Payout) -> tuple[Posting, ...]:
    return unfreeze(payout.payer_account_id, payout.currency, payout.amount)


def _return(payout: Payout) -> tuple[Posting, ...]:
    """Clearing -> the payer's available balance."""
    clearing = clearing_account(payout.currency)
    return credit(payout.payer_account_id, payout.currency, payout.amount, source=clearing)


def _entry(payout: Payout, entry_id: str, postings: tuple[Posting, ...], what: str) -> JournalEntry:
    return JournalEntry(
        entry_id=entry_id,
        kind=ENTRY_KIND,
        ref_type=REF_TYPE,
        ref_id=payout.pay_id,
        postings=postings,
        description=f"payout {payout.pay_id}: {what}",
    )
