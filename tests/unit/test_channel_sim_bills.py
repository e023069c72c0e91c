"""The channel simulator's bills: which trades make a day's lines, when a bill is issued (10:00
the next day, or released), that an issued bill stays as issued, and the injected
discrepancies."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from fundhub.channel_simulator.bill_desk import BillDesk, ready_at
from fundhub.channel_simulator.bills import BillRow, Discrepancy, channel_fee, day_rows, inject
from fundhub.channel_simulator.trades import Book
from fundhub.channels.events import Channel
from fundhub.common.clock import BANK_TZ

DAY = date(2026, 11, 30)
MIDNIGHT = datetime(2026, 11, 30, tzinfo=BANK_TZ)
WX = Channel.WECHATPAY


def book() -> Book:
    """ORD1 paid at 23:59:59 and refunded (250) just after midnight; ORD2 paid the day before;
    ORD3 never paid."""
    trades = Book()
    for number, amount in (("ORD1", 1000), ("ORD2", 500), ("ORD3", 700)):
        trades.create(WX, "wx1", "M1", number, amount, "x", "http://n", MIDNIGHT)
    trades.pay(WX, "ORD1", MIDNIGHT + timedelta(days=1, seconds=-1))
    trades.pay(WX, "ORD2", MIDNIGHT - timedelta(seconds=1))
    trade, refund, _ = trades.refund(WX, "ORD1", "RF1", 250, "", None, MIDNIGHT + timedelta(days=1))
    trades.settle_refund(refund, trade, True, MIDNIGHT + timedelta(days=1, seconds=1))
    return trades


def test_a_days_lines_are_its_payments_and_its_succeeded_refunds_in_gmt8() -> None:
    rows = day_rows(book().trades(WX), "M1", DAY)
    assert [(row.kind, row.reference, row.amount_fen, row.fee_fen) for row in rows] == [
        ("PAYMENT", "ORD1", 1000, 6)
    ]
    next_day = day_rows(book().trades(WX), "M1", DAY + timedelta(days=1))
    assert [(row.kind, row.reference, row.fee_fen) for row in next_day] == [("REFUND", "RF1", 2)]
    assert day_rows(book().trades(WX), "OTHER", DAY) == []


def test_the_fee_rounds_half_up_to_the_fen() -> None:
    assert [channel_fee(amount, 6_000) for amount in (83, 84, 250, 1000)] == [0, 1, 2, 6]


def test_a_bill_is_issued_at_ten_the_next_day_and_then_stays_as_issued() -> None:
    trades = book()
    desk = BillDesk(trades)
    assert desk.rows(WX, "M1", DAY, ready_at(DAY) - timedelta(seconds=1)) is None
    issued = desk.rows(WX, "M1", DAY, ready_at(DAY))
    assert issued is not None and len(issued) == 1
    trades.create(WX, "wx1", "M1", "ORD9", 100, "x", "http://n", MIDNIGHT)
    trades.pay(WX, "ORD9", MIDNIGHT + timedelta(hours=1))  # booked late: not in the issued bill
    assert desk.rows(WX, "M1", DAY, ready_at(DAY) + timedelta(hours=1)) == issued
    desk.release(WX, DAY, {"M1": "wx1"})  # a corrected bill
    again = desk.rows(WX, "M1", DAY, ready_at(DAY))
    assert again is not None and {row.reference for row in again} == {"ORD1", "ORD9"}


def test_release_before_the_day_ends_with_discrepancies() -> None:
    desk = BillDesk(book())
    lines = desk.release(
        WX,
        DAY,
        {"M1": "wx1"},
        [
            Discrepancy(kind="add", amount_fen=300, reference="X1"),
            Discrepancy(kind="drop", reference="ORD1"),
        ],
    )
    assert lines == {"M1": 1}
    rows = desk.rows(WX, "M1", DAY, MIDNIGHT)
    assert rows is not None
    assert [(row.reference, row.amount_fen, row.fee_fen, row.merchant_ref) for row in rows] == [
        ("X1", 300, 2, "M1")
    ]


@pytest.mark.parametrize(
    ("wanted", "why"),
    [
        (Discrepancy(kind="drop", reference="NOPE"), "no line NOPE"),
        (Discrepancy(kind="amount", reference="ORD1"), "amountFen is required"),
        (Discrepancy(kind="drop"), "reference is required"),
    ],
)
def test_a_discrepancy_that_cannot_apply_is_refused_and_nothing_is_issued(
    wanted: Discrepancy, why: str
) -> None:
    desk = BillDesk(book())
    with pytest.raises(ValueError, match=why):
        desk.release(WX, DAY, {"M1": "wx1"}, [wanted])
    assert desk.rows(WX, "M1", DAY, MIDNIGHT) is None


def test_alipays_bill_has_no_status_to_change() -> None:
    rows = day_rows(book().trades(WX), "M1", DAY)
    with pytest.raises(ValueError, match="no status column"):
        inject(
            rows,
            [Discrepancy(kind="status", reference="ORD1", status="X")],
            Channel.ALIPAY,
            DAY,
            "a",
            "M1",
        )


def test_with_several_merchants_the_target_must_be_named() -> None:
    desk = BillDesk(book())
    with pytest.raises(ValueError, match="merchantRef"):
        desk.release(
            WX, DAY, {"M1": "wx1", "M2": "wx2"}, [Discrepancy(kind="drop", reference="ORD1")]
        )


def test_an_issued_bill_is_written_once_and_rewritten_only_when_corrected() -> None:
    desk = BillDesk(book())
    desk.release(WX, DAY, {"M1": "wx1"})
    renders: list[int] = []

    def render(rows: list[BillRow]) -> bytes:
        renders.append(len(rows))
        return f"{len(renders)}".encode()

    first = desk.file(WX, "M1", DAY, "ALL", MIDNIGHT, render)
    assert desk.file(WX, "M1", DAY, "ALL", MIDNIGHT, render) == first == b"1"
    desk.release(WX, DAY, {"M1": "wx1"}, [Discrepancy(kind="drop", reference="ORD1")])
    assert desk.file(WX, "M1", DAY, "ALL", MIDNIGHT, render) == b"2"
    assert renders == [1, 0]
