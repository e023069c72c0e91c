"""A settlement's life and what it posts. Pure: the scheduler and the consumer do the I/O.

    PENDING -> PROCESSING -> SETTLED | REFUSED,   PENDING -> SETTLED | REFUSED

PENDING: recorded (due by the T+1 cut-off, or confirmed by the platform), its split instruction
not yet taken by the depository. PROCESSING: the depository holds the instruction. SETTLED: the
bank confirmed it; one balanced entry moves each receiver's amount from ``pending`` to
``available``. REFUSED: the bank refused it (its reason kept); nothing moves, the money stays in
``pending`` and the order can be settled again.

The bank's reports come late, twice and out of order (its answer to the request may arrive
after its notification), so a state only moves forward and a report that does not move it is
"stale". A report contradicting a final state (FAILED for a SETTLED settlement) is stale too,
but raises ``alert``: a person must look. A report about another instruction or amount is
"rejected" and moves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal

from fundhub.common.errors import ErrorCode
from fundhub.ledger.rules import Bucket, JournalEntry, Posting, move
from fundhub.settlement.amounts import ReceiverAmount
from fundhub.settlement.depository import SplitReport, SplitStatus

ENTRY_KIND = "settlement"
REF_TYPE = "settlement"
SPLIT_REFUSED = ErrorCode.SPLIT_REFUSED.code


class SettlementState(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    SETTLED = "SETTLED"
    REFUSED = "REFUSED"

    @property
    def biz_code(self) -> str:
        return {"SETTLED": "SUCCESS", "REFUSED": "FAILED"}.get(self.value, "PROCESSING")

    @property
    def is_final(self) -> bool:
        return self in (SettlementState.SETTLED, SettlementState.REFUSED)


class Trigger(StrEnum):
    """Why the order settles: its T+1 cut-off came, or the platform confirmed it."""

    SCHEDULED = "SCHEDULED"
    CONFIRMED = "CONFIRMED"


@dataclass(frozen=True)
class Settlement:
    settlement_id: str
    order_no: str
    currency: str
    receivers: tuple[ReceiverAmount, ...]
    state: SettlementState
    bank_split_id: str | None = None
    error_code: str | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", SettlementState(self.state))
        object.__setattr__(self, "receivers", tuple(self.receivers))
        if not self.receivers:
            raise ValueError("a settlement moves money for at least one receiver")

    @property
    def amount(self) -> int:
        return sum(r.amount for r in self.receivers)


Outcome = Literal["applied", "stale", "rejected"]


@dataclass(frozen=True)
class Transition:
    """What one report does: the settlement's new state and the entry posted with it."""

    settlement: Settlement | None
    entry: JournalEntry | None
    outcome: Outcome
    note: str
    alert: bool = False


def settle_postings(settlement: Settlement) -> tuple[Posting, ...]:
    """Each receiver's amount from its pending to its available: balanced per account."""
    postings: list[Posting] = []
    for receiver in settlement.receivers:
        postings.extend(
            move(
                receiver.account_id,
                Bucket.PENDING,
                receiver.account_id,
                Bucket.AVAILABLE,
                settlement.currency,
                receiver.amount,
            )
        )
    return tuple(postings)


def settle_entry(settlement: Settlement, entry_id: str) -> JournalEntry:
    return JournalEntry(
        entry_id=entry_id,
        kind=ENTRY_KIND,
        ref_type=REF_TYPE,
        ref_id=settlement.settlement_id,
        postings=settle_postings(settlement),
        description=f"settlement {settlement.settlement_id} of order {settlement.order_no}",
    )


def report(settlement: Settlement, rep: SplitReport, entry_id: str) -> Transition:
    """What a report of the bank (answer, query or notification) does to ``settlement``."""
    mismatch = _mismatch(settlement, rep)
    if mismatch:
        return Transition(None, None, "rejected", f"nothing moved: {mismatch}", alert=True)
    state, status = settlement.state, rep.status
    bank_split_id = settlement.bank_split_id or rep.bank_split_id
    seen = f"{status} for a settlement {state}"
    if not state.is_final:
        if status is SplitStatus.PROCESSING:
            if state is SettlementState.PENDING or bank_split_id != settlement.bank_split_id:
                moved = replace(
                    settlement, state=SettlementState.PROCESSING, bank_split_id=bank_split_id
                )
                return Transition(moved, None, "applied", f"{state} -> PROCESSING")
            return Transition(None, None, "stale", f"{seen}: still processing")
        if status is SplitStatus.SUCCESS:
            moved = replace(settlement, state=SettlementState.SETTLED, bank_split_id=bank_split_id)
            entry = settle_entry(settlement, entry_id)
            return Transition(moved, entry, "applied", f"{state} -> SETTLED")
        moved = _refused(settlement, rep.reason, bank_split_id)
        return Transition(moved, None, "applied", f"{state} -> REFUSED: {moved.message}")
    if (state, status) in _SAME:
        return Transition(None, None, "stale", f"{seen}: duplicate")
    if status is SplitStatus.PROCESSING:
        return Transition(None, None, "stale", f"{seen}: late")
    note = f"{seen}: contradicts the recorded outcome, nothing moved; investigate"
    return Transition(None, None, "stale", note, alert=True)


def refused_request(settlement: Settlement, reason: str) -> Transition:
    """The depository refused the request itself (it holds no instruction from it)."""
    if settlement.state is not SettlementState.PENDING:
        return Transition(
            None, None, "stale", f"a refused request for a settlement {settlement.state}"
        )
    moved = _refused(settlement, reason, None)
    return Transition(moved, None, "applied", f"PENDING -> REFUSED: {moved.message}")


_SAME = frozenset(
    {
        (SettlementState.SETTLED, SplitStatus.SUCCESS),
        (SettlementState.REFUSED, SplitStatus.FAILED),
    }
)


def _refused(settlement: Settlement, reason: str | None, bank_split_id: str | None) -> Settlement:
    return replace(
        settlement,
        state=SettlementState.REFUSED,
        bank_split_id=bank_split_id or settlement.bank_split_id,
        error_code=SPLIT_REFUSED,
        message=reason or ErrorCode.SPLIT_REFUSED.default_message,
    )


def _mismatch(settlement: Settlement, rep: SplitReport) -> str:
    problems: list[str] = []
    if rep.split_request_id != settlement.settlement_id:
        problems.append(f"split_request_id {rep.split_request_id} != {settlement.settlement_id}")
    if rep.amount is not None and rep.amount != settlement.amount:
        problems.append(f"amount {rep.amount} != {settlement.amount}")
    if (
        settlement.bank_split_id is not None
        and rep.bank_split_id is not None
        and rep.bank_split_id != settlement.bank_split_id
    ):
        problems.append(f"bank_split_id {rep.bank_split_id} != {settlement.bank_split_id}")
    return "; ".join(problems)
