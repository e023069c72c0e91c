"""A refund after the split, told to the depository: which refunds need a debit and of whom,
the wire and the answers (``orders.refund_debits``); the simulated bank's checks, its
asynchronous completion and the ``SPLIT_REFUND`` lines it books (``depository_refund_debits``,
``daily_files``), read back by the reconciliation's parser under per-member keys."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest

from fundhub.bank_simulator.daily_files import daily_file, postings
from fundhub.bank_simulator.depository_intake import RequestConflict, RequestRefused
from fundhub.bank_simulator.depository_refund_debits import RefundDebitDesk, debit_from_wire
from fundhub.bank_simulator.depository_splits import SplitDesk
from fundhub.common.clock import BANK_TZ
from fundhub.orders.refund_debits import (
    PLATFORM_MEMBER,
    DebitStatus,
    MemberDebit,
    RefundDebit,
    debit_of,
    parse_answer,
)
from fundhub.reconciliation.bank_file import parse_bank_file
from fundhub.reconciliation.match_keys import line_key
from fundhub.reconciliation.statement import LineKind

AT = datetime(2026, 11, 30, 9, tzinfo=BANK_TZ)
DAY = date(2026, 11, 30)
ORDER = {"order_id": "ORD1", "order_no": "no-1", "currency": "CNY", "settling_id": "STL1"}
PARTS = [
    {"merchant_id": "mch_a", "account_id": "acc_a"},
    {"merchant_id": "mch_b", "account_id": "acc_b"},
    {"merchant_id": None, "account_id": "fee_k_CNY"},
]


def _refund(source: str, allocation: list[int]) -> dict[str, Any]:
    return {"refund_id": "RFD1", "source_bucket": source, "allocation": allocation}


def test_only_a_refund_taken_after_the_split_debits_each_member_by_its_share() -> None:
    debit = debit_of(ORDER, PARTS, _refund("available", [600, 0, 100]))
    assert debit == RefundDebit(
        "RFD1", "ORD1", "no-1", "STL1", "CNY",
        (MemberDebit("mch_a", "acc_a", 600), MemberDebit(PLATFORM_MEMBER, "fee_k_CNY", 100)),
    )  # fmt: skip
    assert debit.to_wire() == {
        "refund_request_id": "RFD1", "split_request_id": "STL1", "order_no": "no-1",
        "currency": "CNY", "amount": "700",
        "members": [{"member_id": "mch_a", "amount": "600"},
                    {"member_id": PLATFORM_MEMBER, "amount": "100"}],
    }  # fmt: skip
    # Before settlement the money never reached the members at the bank: nothing to debit.
    assert debit_of(ORDER, PARTS, _refund("pending", [600, 0, 100])) is None
    assert debit_of({**ORDER, "settling_id": None}, PARTS, _refund("available", [1, 0, 0])) is None


def test_answers_are_read_strictly() -> None:
    report = parse_answer(
        {"refund_request_id": "RFD1", "bank_refund_id": "BD1", "status": "SUCCESS",
         "finished_time": "2026-11-30 09:00:01"},
        "RFD1",
    )  # fmt: skip
    assert (report.status, report.bank_debit_id) == (DebitStatus.SUCCESS, "BD1")
    assert report.finished_time == AT + timedelta(seconds=1)
    processing = {"refund_request_id": "RFD1", "status": "PROCESSING", "finished_time": ""}
    assert parse_answer(processing, "RFD1").finished_time is None
    for wrong in (
        {**processing, "refund_request_id": "RFD2"},
        {**processing, "status": "DONE"},
        {**processing, "status": "SUCCESS"},  # a final status says when
        [processing],
    ):
        with pytest.raises(ValueError):
            parse_answer(wrong, "RFD1")


def _desk() -> RefundDebitDesk:
    splits = SplitDesk()
    split, _ = splits.register(
        {
            "split_request_id": "STL1", "order_no": "no-1", "currency": "CNY", "amount": "1000",
            "notify_url": "http://n",
            "receivers": [{"member_id": "mch_a", "member_name": "甲", "amount": "900"},
                          {"member_id": PLATFORM_MEMBER, "member_name": "p", "amount": "100"}],
        },
        AT,
    )  # fmt: skip
    splits.complete(split, AT)
    return RefundDebitDesk(splits, delay_s=1.0)


def _wire(refund_id: str, **members: int) -> dict[str, Any]:
    return debit_from_wire({
        "refund_request_id": refund_id, "split_request_id": "STL1", "order_no": "no-1",
        "currency": "CNY", "amount": str(sum(members.values())),
        "members": [{"member_id": m, "amount": str(n)} for m, n in members.items()],
    })  # fmt: skip


def test_the_bank_debits_no_more_than_the_split_credited_and_completes_later() -> None:
    desk = _desk()
    first = desk.register(_wire("R1", mch_a=600, platform=100), AT)
    assert desk.register(_wire("R1", mch_a=600, platform=100), AT) is first  # a retry
    with pytest.raises(RequestConflict):
        desk.register(_wire("R1", mch_a=500, platform=100), AT)
    with pytest.raises(RequestRefused, match="more than STL1 credited"):
        desk.register(_wire("R2", mch_a=301), AT)  # 600 + 301 > 900
    with pytest.raises(RequestRefused, match="was not credited"):
        desk.register(_wire("R3", mch_b=1), AT)
    with pytest.raises(RequestRefused, match="no completed split"):
        desk.register({**_wire("R4", mch_a=1), "split_request_id": "STL9"}, AT)
    with pytest.raises(RequestRefused, match="members' sum"):
        debit_from_wire({**_wire("R5", mch_a=1), "amount": "2"})
    assert desk.register(_wire("R2", mch_a=300), AT).status is DebitStatus.PROCESSING
    assert desk.done(AT + timedelta(seconds=0.5)) == []
    done = desk.done(AT + timedelta(seconds=1))
    assert [(d.refund_request_id, d.finished_at) for d in done] == [
        ("R1", AT + timedelta(seconds=1)),
        ("R2", AT + timedelta(seconds=1)),
    ]


def test_each_member_debit_is_a_split_refund_line_of_the_day_matched_per_member() -> None:
    desk = _desk()
    desk.register(_wire("R1", mch_a=600, platform=100), AT)
    history = postings([], [], desk.splits.splits.values(), desk.done(AT + timedelta(hours=1)))
    moves = [(p.business, p.reference, p.account, p.direction, p.amount) for p in history]
    assert moves == [
        ("SPLIT_IN", "STL1", "mch_a", "C", 900),
        ("SPLIT_IN", "STL1", PLATFORM_MEMBER, "C", 100),
        ("SPLIT_REFUND", "R1", "mch_a", "D", 600),
        ("SPLIT_REFUND", "R1", PLATFORM_MEMBER, "D", 100),
    ]
    statement = parse_bank_file(daily_file(history, "APP", DAY, AT), DAY)
    closing = {b.account: b.balance_fen for b in statement.closing_balances}
    assert closing == {"mch_a": 300, PLATFORM_MEMBER: 0}
    refunds = [li for li in statement.lines if li.business == "SPLIT_REFUND"]
    assert [li.kind for li in refunds] == [LineKind.DEBIT, LineKind.DEBIT]
    assert sorted(line_key(li) for li in refunds) == [
        "SPLIT_REFUND:R1:mch_a",
        f"SPLIT_REFUND:R1:{PLATFORM_MEMBER}",
    ]
