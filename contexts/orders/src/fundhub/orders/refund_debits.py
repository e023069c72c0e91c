"""Telling the depository of a refund made after the order's split (分账退款): the protocol's
names, its types, the reading of its answers, and which refunds need it. No I/O.

Once an order is settled the depository has credited each receiver's sub-account (and the
platform's, for its fee) by the split; a refund taken from the shares after that leaves the
members' money at the bank unless the bank debits them too. So a refund that reaches SUCCESS
with its money taken from ``available`` (the order settled) is registered with the depository
as a debit of each member by its share, naming the split it takes back from.

The bank's API in ``notes/channels-and-depository.md`` lists "refund" among the depository's
channel-money calls without a wire format; this one is modelled on the split instruction
(``settlement.depository``): JSON, snake_case, amounts as strings of fen, one id
(``refund_request_id``: our refundId) under which alone it is ever sent, so a retry the bank has
seen is deduplicated there; taken synchronously (PROCESSING, or a refusal), completed
asynchronously, its state read by a status query (``GET``). The simulator plays that side and
imports these names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

from fundhub.bank_client.refusal import Refused
from fundhub.common.clock import parse_bank_time

REFUND_DEBITS_PATH = "/depository/v1/split-refunds"
NOT_FOUND = "NOT_FOUND"
REFUSED = "REFUSED"
# The depository member a split credits for the platform's fee (settlement's instruction
# names it so; merchants are members under their merchant id).
PLATFORM_MEMBER = "platform"
# The bank's daily file books each member's debit as a line of this business type.
BUSINESS_TYPE = "SPLIT_REFUND"
_ID_MAX = 64
_REASON_MAX = 256


class DebitStatus(StrEnum):
    PROCESSING = "PROCESSING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"


class DebitState(StrEnum):
    """Ours: PENDING until the bank has taken it, then its word."""

    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"

    @property
    def is_final(self) -> bool:
        return self in (DebitState.SUCCESS, DebitState.FAILED)


@dataclass(frozen=True, slots=True)
class MemberDebit:
    member_id: str  # the merchant id, or PLATFORM_MEMBER
    account_id: str  # the ledger account the share was taken from
    amount: int

    def to_json(self) -> dict[str, Any]:
        return {"memberId": self.member_id, "accountId": self.account_id, "amount": self.amount}


@dataclass(frozen=True, slots=True)
class RefundDebit:
    """A refund's debit of the members, as registered with the depository."""

    refund_id: str
    order_id: str
    order_no: str
    settlement_id: str  # the split it takes back from: its split_request_id
    currency: str
    members: tuple[MemberDebit, ...]

    @property
    def amount(self) -> int:
        return sum(m.amount for m in self.members)

    def to_wire(self) -> dict[str, Any]:
        return {
            "refund_request_id": self.refund_id,
            "split_request_id": self.settlement_id,
            "order_no": self.order_no,
            "currency": self.currency,
            "amount": str(self.amount),
            "members": [{"member_id": m.member_id, "amount": str(m.amount)} for m in self.members],
        }


def debit_of(
    order: Mapping[str, Any],
    parts: Sequence[Mapping[str, Any]],
    refund: Mapping[str, Any],
) -> RefundDebit | None:
    """The debit a refund that just reached SUCCESS needs: only one taken from ``available``
    (the order's split done, its shares credited at the bank) on an order with a settlement;
    each part's share of the refund (its allocation) debited from that part's member."""
    if refund["source_bucket"] != "available" or not order.get("settling_id"):
        return None
    members = tuple(
        MemberDebit(part["merchant_id"] or PLATFORM_MEMBER, part["account_id"], int(amount))
        for part, amount in zip(parts, refund["allocation"], strict=True)
        if amount > 0
    )
    if not members:
        return None
    return RefundDebit(
        refund_id=refund["refund_id"],
        order_id=order["order_id"],
        order_no=order["order_no"],
        settlement_id=order["settling_id"],
        currency=order["currency"],
        members=members,
    )


@dataclass(frozen=True, slots=True)
class DebitReport:
    """The bank's word on one debit: its status, its number, why it failed, when it ended."""

    refund_id: str
    status: DebitStatus
    bank_debit_id: str | None = None
    reason: str | None = None
    finished_time: datetime | None = None


class DebitUnavailable(Exception):
    """No usable answer after the retries: the bank may or may not hold it; ask again later
    under the same id, never read it as refused."""


class DebitRefused(Refused):
    """The bank refused the request (4xx): it holds no debit from it."""

    reason_chars = _REASON_MAX


class RefundDebitPort(Protocol):
    async def register(self, debit: RefundDebit) -> DebitReport:
        """Idempotent by refund_request_id; raises DebitUnavailable or DebitRefused."""
        ...

    async def query(self, refund_id: str) -> DebitReport | None:
        """The debit's state; None only when the bank says it never received it."""
        ...


def parse_answer(body: Any, refund_id: str) -> DebitReport:
    """An answer to a registration or a query; ValueError for anything else."""
    if not isinstance(body, Mapping):
        raise ValueError("answer is not a JSON object")
    if body.get("refund_request_id") != refund_id:
        raise ValueError("answer is about another refund_request_id")
    try:
        status = DebitStatus(str(body.get("status")))
    except ValueError:
        raise ValueError(f"unknown status {str(body.get('status'))[:40]!r}") from None
    bank_id = body.get("bank_refund_id")
    if bank_id is not None and (not isinstance(bank_id, str) or not 0 < len(bank_id) <= _ID_MAX):
        raise ValueError("bank_refund_id: not a string of 1 to 64 characters")
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ValueError("reason: not a string")
    finished_text = body.get("finished_time")
    finished = None
    if finished_text:
        if not isinstance(finished_text, str):
            raise ValueError("finished_time: not a string")
        finished = parse_bank_time(finished_text)  # ValueError when not yyyy-MM-dd HH:mm:ss
    if status is not DebitStatus.PROCESSING and finished is None:
        raise ValueError("finished_time: missing on a final status")
    return DebitReport(
        refund_id, status, bank_id or None, reason[:_REASON_MAX] if reason else None, finished
    )
