"""What an import does, given what the platform already holds. Pure: no I/O.

Idempotent by the platform's ids: a merchant is its owner's ``merchantNo``, an opening balance
is a merchant's, once. A row equal to what is held changes nothing; a row that differs from what
is held is a *conflict*: reported with its line, never applied (the held data may have traded
since; an operator decides). So a second run of the same file changes nothing, and a run cut
short (a crash, a bank away) is finished by running the same file again: merchants created but
not yet confirmed by the depository are sent again under the same request id.

An opening balance is one balanced entry per merchant: the merchant's ``available`` credited,
the opening-balance equity account (a system account) debited. After an import the merchants'
opening balances sum to minus that account's balance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import Any

from fundhub.ledger.rules import JournalEntry, credit, system_account
from fundhub.merchants.states import MerchantState
from fundhub.reconciliation.initialisation.files import (
    BalanceFile,
    BalanceRow,
    FileRefused,
    MerchantFile,
    MerchantRow,
    Problem,
)

OPENING_BALANCE_EQUITY = "opening-balance-equity"
ENTRY_KIND = "opening-balance"
ENTRY_REF_TYPE = "merchant"


def equity_account(currency: str) -> str:
    return system_account(OPENING_BALANCE_EQUITY, currency)


@dataclass(frozen=True, slots=True)
class Conflict:
    """A row for an id the platform holds with other data: reported, not applied."""

    line: int
    merchant_no: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "merchantNo": self.merchant_no, "message": self.message}


# --- merchants ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeldMerchant:
    """A merchant the owner holds under a ``merchantNo`` of the file."""

    merchant_id: str
    fingerprint: str | None
    state: MerchantState
    register_request: str | None  # its REGISTER request still unfinished, if any


@dataclass(frozen=True)
class MerchantPlan:
    create: tuple[MerchantRow, ...]
    unchanged: tuple[MerchantRow, ...]
    # Held, equal, and their registration unfinished: (row, merchant_id, request_id).
    resume: tuple[tuple[MerchantRow, str, str], ...]
    conflicts: tuple[Conflict, ...]


def plan_merchants(file: MerchantFile, held: Mapping[str, HeldMerchant]) -> MerchantPlan:
    create: list[MerchantRow] = []
    unchanged: list[MerchantRow] = []
    resume: list[tuple[MerchantRow, str, str]] = []
    conflicts: list[Conflict] = []
    for row in file.rows:
        merchant = held.get(row.merchant_no)
        if merchant is None:
            create.append(row)
        elif merchant.fingerprint != row.registration.fingerprint():
            conflicts.append(
                Conflict(
                    row.line,
                    row.merchant_no,
                    f"held as {merchant.merchant_id} ({merchant.state}) with other material;"
                    " not changed",
                )
            )
        elif merchant.register_request is not None:
            resume.append((row, merchant.merchant_id, merchant.register_request))
        else:
            unchanged.append(row)
    return MerchantPlan(tuple(create), tuple(unchanged), tuple(resume), tuple(conflicts))


# --- opening balances ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BalanceTarget:
    """A merchant a balance row names, as held: its account and whether it may hold funds."""

    merchant_id: str
    account_id: str
    state: MerchantState
    currency: str = "CNY"


@dataclass(frozen=True, slots=True)
class Opening:
    row: BalanceRow
    target: BalanceTarget
    entry: JournalEntry | None  # None for a zero balance: recorded, nothing posted


@dataclass(frozen=True)
class BalancePlan:
    post: tuple[Opening, ...]
    unchanged: tuple[BalanceRow, ...]
    conflicts: tuple[Conflict, ...]
    amount_fen: int = field(default=0)  # what ``post`` credits in all


def plan_balances(
    file: BalanceFile,
    targets: Mapping[str, BalanceTarget],
    posted: Mapping[str, int],
    entry_ids: Sequence[str],
    moved: Set[str] = frozenset(),
) -> BalancePlan:
    """``targets`` by merchantNo (the owner's merchants the file names), ``posted`` the opening
    balances already recorded (by merchantNo), ``entry_ids`` fresh ids, one per row at least,
    ``moved`` the targets' accounts that have postings already.

    A row naming a merchant the owner does not hold, or one that cannot hold funds (not ACTIVE),
    refuses the file whole (``FileRefused``), as an unreadable line does: the file and the
    platform disagree on who the merchants are, and no part of it should be booked. So does a
    new opening balance for an account that has moved money already: an opening balance opens
    an account, it is not a top-up (that would count the same funds twice)."""
    problems = [
        problem
        for row in file.rows
        if (
            problem := _target_problem(
                row, targets.get(row.merchant_no), row.merchant_no in posted, moved
            )
        )
        is not None
    ]
    if problems:
        raise FileRefused(problems)
    if len(entry_ids) < len(file.rows):
        raise ValueError("one entry id per row")
    post: list[Opening] = []
    unchanged: list[BalanceRow] = []
    conflicts: list[Conflict] = []
    for row, entry_id in zip(file.rows, entry_ids, strict=False):
        target = targets[row.merchant_no]
        before = posted.get(row.merchant_no)
        if before is None:
            post.append(Opening(row, target, opening_entry(entry_id, row, target)))
        elif before == row.amount_fen:
            unchanged.append(row)
        else:
            conflicts.append(
                Conflict(
                    row.line,
                    row.merchant_no,
                    f"an opening balance of {_yuan(before)} was booked before; "
                    f"{_yuan(row.amount_fen)} not booked",
                )
            )
    amount = sum(opening.row.amount_fen for opening in post)
    return BalancePlan(tuple(post), tuple(unchanged), tuple(conflicts), amount)


def opening_entry(entry_id: str, row: BalanceRow, target: BalanceTarget) -> JournalEntry | None:
    """The merchant's available credited from the equity account; none for zero."""
    if row.amount_fen == 0:
        return None
    return JournalEntry(
        entry_id=entry_id,
        kind=ENTRY_KIND,
        ref_type=ENTRY_REF_TYPE,
        ref_id=target.merchant_id,
        postings=credit(
            target.account_id,
            row.currency,
            row.amount_fen,
            source=equity_account(row.currency),
        ),
        description=f"opening balance, line {row.line}",
    )


def _target_problem(
    row: BalanceRow, target: BalanceTarget | None, booked: bool, moved: Set[str]
) -> Problem | None:
    if target is None:
        return Problem(
            row.line, "merchantNo", f"{row.merchant_no}: no such merchant (import it first)"
        )
    if target.state is not MerchantState.ACTIVE:
        return Problem(
            row.line,
            "merchantNo",
            f"{row.merchant_no} is {target.state}: only an ACTIVE member of the depository"
            " holds funds",
        )
    if target.currency != row.currency:
        return Problem(row.line, "currency", f"the merchant's account is held in {target.currency}")
    if not booked and target.account_id in moved:
        return Problem(
            row.line,
            "merchantNo",
            f"{row.merchant_no}'s account has moved money already: an opening balance opens an"
            " account",
        )
    return None


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"
