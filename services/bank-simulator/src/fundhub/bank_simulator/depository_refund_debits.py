"""The depository's refund debits (分账退款, ``/depository/v1/split-refunds``), as
``orders.refund_debits_http`` calls them: a refund after an order's split takes each member's
share back from its sub-account.

``POST /depository/v1/split-refunds`` registers a debit (idempotent by ``refund_request_id``;
the same id with other content is refused 409) and answers ``PROCESSING``; like the split desk
it completes asynchronously, ``delay_s`` later (read when asked, so no task is needed): SUCCESS,
booked as one ``SPLIT_REFUND`` debit per member in the daily file. ``GET
/depository/v1/split-refunds/{id}`` tells its state or ``NOT_FOUND``. No result notification is
sent for these: the platform learns the outcome by asking.

Refused at once (400, nothing held), as a depository checks a debit against what it credited:
a split it does not hold or that did not succeed, a member the split did not credit, or more
taken from a member (with the debits before) than the split credited it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request, Response

from fundhub.bank_simulator.depository_intake import (
    RequestRefused,
    held_answer,
    held_before,
    json_body,
    refusal,
    shares_from_wire,
)
from fundhub.bank_simulator.depository_splits import SplitDesk
from fundhub.common.clock import format_bank_time, utcnow
from fundhub.common.ids import random_uuid
from fundhub.orders.refund_debits import REFUND_DEBITS_PATH, DebitStatus
from fundhub.settlement.depository import SplitStatus

_MAX_BODY = 64 * 1024
MAX_MEMBERS = 51  # an order's receivers and the platform's fee


@dataclass
class Debit:
    wire: dict[str, Any]
    bank_refund_id: str
    received_at: datetime
    due_at: datetime
    status: DebitStatus = DebitStatus.PROCESSING
    finished_at: datetime | None = None

    @property
    def refund_request_id(self) -> str:
        return str(self.wire["refund_request_id"])

    def members(self) -> list[tuple[str, int]]:
        return [(str(m["member_id"]), int(m["amount"])) for m in self.wire["members"]]

    def answer(self) -> dict[str, str]:
        return {
            "refund_request_id": self.refund_request_id,
            "bank_refund_id": self.bank_refund_id,
            "status": self.status.value,
            "finished_time": format_bank_time(self.finished_at) if self.finished_at else "",
        }


def debit_from_wire(body: Any) -> dict[str, Any]:
    """The debit, checked as the bank checks its shape; RequestRefused names the field."""
    return shares_from_wire(
        body,
        id_field="refund_request_id",
        fields=("split_request_id", "order_no", "currency", "amount"),
        parts="members",
        part_fields=("member_id", "amount"),
        max_parts=MAX_MEMBERS,
    )


@dataclass
class RefundDebitDesk:
    """Debits by id, each checked against the split it takes back from."""

    splits: SplitDesk
    delay_s: float = 0.2
    debits: dict[str, Debit] = field(default_factory=dict)
    refused_requests: int = 0

    def register(self, wire: dict[str, Any], now: datetime) -> Debit:
        known = held_before(self.debits, wire, "refund_request_id", "debit")
        if known is not None:
            return known
        self._check_against_split(wire)
        debit = Debit(
            wire,
            "BD" + random_uuid().replace("-", "")[:24],
            now,
            now + timedelta(seconds=self.delay_s),
        )
        self.debits[debit.refund_request_id] = debit
        return debit

    def _check_against_split(self, wire: dict[str, Any]) -> None:
        split_id = str(wire["split_request_id"])
        split = self.splits.splits.get(split_id)
        if split is None or split.status is not SplitStatus.SUCCESS:
            raise RequestRefused(f"split_request_id: no completed split {split_id}")
        credited: dict[str, int] = {}
        for receiver in split.wire["receivers"]:
            member = str(receiver["member_id"])
            credited[member] = credited.get(member, 0) + int(receiver["amount"])
        taken: dict[str, int] = {}
        for debit in self.debits.values():
            if debit.wire["split_request_id"] == split_id:
                for member, amount in debit.members():
                    taken[member] = taken.get(member, 0) + amount
        for member_wire in wire["members"]:
            member = str(member_wire["member_id"])
            if member not in credited:
                raise RequestRefused(f"members: {member} was not credited by {split_id}")
            taken[member] = taken.get(member, 0) + int(member_wire["amount"])
            if taken[member] > credited[member]:
                raise RequestRefused(
                    f"members: {member} would give back more than {split_id} credited it"
                )

    def settle_due(self, now: datetime) -> None:
        """The debits whose time has come are done (the bank's asynchronous completion)."""
        for debit in self.debits.values():
            if debit.status is DebitStatus.PROCESSING and debit.due_at <= now:
                debit.status = DebitStatus.SUCCESS
                debit.finished_at = debit.due_at

    def done(self, now: datetime) -> list[Debit]:
        self.settle_due(now)
        return [d for d in self.debits.values() if d.status is DebitStatus.SUCCESS]


def refund_debit_router(desk: RefundDebitDesk) -> APIRouter:
    router = APIRouter(tags=["bank: depository refund debits"])

    @router.post(REFUND_DEBITS_PATH, summary="Debit the members for a refund after a split")
    async def register(request: Request) -> Response:
        try:
            body = await json_body(request, _MAX_BODY)
            now = utcnow()
            desk.settle_due(now)
            debit = desk.register(debit_from_wire(body), now)
        except RequestRefused as exc:
            desk.refused_requests += 1
            return refusal(exc)
        return held_answer(debit)

    @router.get(REFUND_DEBITS_PATH + "/{refund_request_id}", summary="A debit's current state")
    async def query(refund_request_id: str) -> Response:
        desk.settle_due(utcnow())
        return held_answer(desk.debits.get(refund_request_id))

    return router
