"""Orders' and refunds' state machines and what each decision posts (orders.states, postings)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from fundhub.channels.events import Channel, ChannelEvent, EventKind, RefundStatus
from fundhub.channels.ports import RefundState as ChannelRefundState
from fundhub.ledger.rules import Balance, Bucket, apply_entry, new_entry_id, totals_by_currency
from fundhub.orders import states
from fundhub.orders.postings import Part, clearing_account, fee_account
from fundhub.orders.states import Order, OrderState, Refund, RefundState

CLEARING = clearing_account(Channel.WECHATPAY, "CNY")
PARTS = (
    Part(0, "mch_a", "acct-a", 6_000),
    Part(1, "mch_b", "acct-b", 3_000),
    Part(2, None, fee_account("ak_x", "CNY"), 1_000),
)
ORDER = Order(
    order_id="ORD202611300000000001",
    state=OrderState.AWAITING_PAYMENT,
    amount=10_000,
    currency="CNY",
    channel=Channel.WECHATPAY,
    app_id="wx-app",
    parts=PARTS,
    merchant_ref="1900000001",
)
PAID = replace(ORDER, state=OrderState.PAID, transaction_id="T-1")
REFUND = Refund("RFD202611300000000001", 5_000, (3_000, 1_500, 500), RefundState.PROCESSING)
HELD = replace(REFUND, held=True, source=Bucket.PENDING)


def event(kind: EventKind = EventKind.PAYMENT, **changes: Any) -> ChannelEvent:
    fields: dict[str, Any] = {
        "channel": Channel.WECHATPAY,
        "kind": kind,
        "appId": "wx-app",
        "merchantRef": "1900000001",
        "notificationId": "n-1",
        "outTradeNo": ORDER.order_id,
        "transactionId": "T-1",
        "totalFen": 10_000,
        "occurredAt": datetime(2026, 11, 30, tzinfo=UTC),
    }
    if kind is EventKind.REFUND:
        fields.update(
            outRefundNo=REFUND.refund_id,
            refundId="R-1",
            refundFen=5_000,
            refundStatus=RefundStatus.SUCCESS,
        )
    fields.update(changes)
    return ChannelEvent.model_validate(fields)


def balances(**pending: int) -> dict[str, Balance]:
    found = {p.account_id: Balance(p.account_id, "CNY") for p in PARTS}
    for part in PARTS:
        found[part.account_id].pending = pending.get(part.merchant_id or "fee", 0)
    return found


def by_account(move: states.Move) -> dict[tuple[str, str], int]:
    assert move.entry is not None
    assert totals_by_currency(move.entry.postings) == {"CNY": 0}
    summed: dict[tuple[str, str], int] = {}
    for p in move.entry.postings:
        summed[(p.account_id, p.bucket.value)] = (
            summed.get((p.account_id, p.bucket.value), 0) + p.amount
        )
    return summed


def test_a_payment_posts_clearing_to_every_part_pending_in_one_balanced_entry() -> None:
    move = states.on_event(ORDER, None, event(), new_entry_id())
    assert move.outcome == "applied" and move.order is not None
    assert move.order.state is OrderState.PAID and move.order.transaction_id == "T-1"
    assert by_account(move) == {
        (CLEARING, "available"): -10_000,
        ("acct-a", "pending"): 6_000,
        ("acct-b", "pending"): 3_000,
        (fee_account("ak_x", "CNY"), "pending"): 1_000,
    }


def test_a_zero_platform_fee_posts_no_fee_line() -> None:
    parts = (Part(0, "mch_a", "acct-a", 10_000), Part(1, None, "fee", 0))
    move = states.pay(replace(ORDER, parts=parts), "T-1", new_entry_id())
    assert by_account(move) == {(CLEARING, "available"): -10_000, ("acct-a", "pending"): 10_000}


def test_a_duplicate_payment_is_stale_and_a_second_transaction_an_exception() -> None:
    assert states.on_event(PAID, None, event(), new_entry_id()).outcome == "stale"
    second = states.on_event(PAID, None, event(transactionId="T-2"), new_entry_id())
    assert second.outcome == "exception" and second.alert and second.entry is None
    assert "second payment" in (second.exception or "")


@pytest.mark.parametrize(
    ("order", "notice", "reason"),
    [
        (None, event(), "no order"),
        (ORDER, event(appId="wx-other"), "app wx-other"),
        (ORDER, event(merchantRef="1900000002"), "(1900000002)"),
        (ORDER, event(channel=Channel.ALIPAY), "ALIPAY app"),
        (ORDER, event(totalFen=9_999), "total 9999 != the order's amount 10000"),
        (replace(ORDER, state=OrderState.FAILED), event(), "refused"),
    ],
)
def test_what_cannot_be_about_the_order_moves_nothing_and_is_kept(
    order: Order | None, notice: ChannelEvent, reason: str
) -> None:
    move = states.on_event(order, None, notice, new_entry_id())
    assert move.outcome == "exception" and move.alert
    assert move.order is None and move.refund is None and move.entry is None
    assert reason in (move.exception or "")


def test_closed_before_payment_and_paid_after_closing() -> None:
    closed = states.on_event(ORDER, None, event(EventKind.CLOSED), new_entry_id())
    assert closed.order is not None and closed.order.state is OrderState.CLOSED
    assert closed.entry is None
    # The channel took the money after all: post it, and tell a person.
    late = states.on_event(closed.order, None, event(), new_entry_id())
    assert late.order is not None and late.order.state is OrderState.PAID and late.alert
    assert by_account(late)[(CLEARING, "available")] == -10_000
    # CLOSED for a paid order contradicts it: nothing moves, kept.
    contradiction = states.on_event(PAID, None, event(EventKind.CLOSED), new_entry_id())
    assert contradiction.outcome == "exception" and contradiction.order is None


def test_a_refund_notice_before_the_payment_notice_matches_no_refund_and_posts_nothing() -> None:
    move = states.on_event(ORDER, None, event(EventKind.REFUND), new_entry_id())
    assert move.outcome == "exception" and move.entry is None
    # The payment notice that comes after it still posts.
    assert states.on_event(ORDER, None, event(), new_entry_id()).outcome == "applied"


def test_a_refund_is_held_from_pending_before_settlement_and_available_after() -> None:
    move = states.hold(PAID, REFUND, balances(mch_a=6_000, mch_b=3_000, fee=1_000), new_entry_id())
    assert move.refund is not None and move.refund.held and move.refund.source is Bucket.PENDING
    assert by_account(move) == {
        ("acct-a", "pending"): -3_000,
        ("acct-a", "frozen"): 3_000,
        ("acct-b", "pending"): -1_500,
        ("acct-b", "frozen"): 1_500,
        (fee_account("ak_x", "CNY"), "pending"): -500,
        (fee_account("ak_x", "CNY"), "frozen"): 500,
    }
    settled = replace(PAID, settled=True)
    after = balances()
    for part in PARTS:
        after[part.account_id].available = part.amount
    move = states.hold(settled, REFUND, after, new_entry_id())
    assert move.refund is not None and move.refund.source is Bucket.AVAILABLE
    assert by_account(move)[("acct-a", "available")] == -3_000


def test_a_refund_whose_money_is_gone_fails_with_e004_and_posts_nothing() -> None:
    settled = replace(PAID, settled=True)
    withdrawn = balances()  # settled, and every fen withdrawn since
    move = states.hold(settled, REFUND, withdrawn, new_entry_id())
    assert move.refund is not None and move.refund.state is RefundState.FAILED
    assert move.refund.error_code == "E004_INSUFFICIENT_FUNDS" and move.entry is None
    again = states.hold(PAID, HELD, balances(mch_a=6_000, mch_b=3_000, fee=1_000), new_entry_id())
    assert again.outcome == "stale"  # a command replayed never holds twice


def test_refund_results_finish_it_once_whichever_comes_first() -> None:
    success = states.answer_refund(PAID, HELD, ChannelRefundState.SUCCESS, "R-1", new_entry_id())
    assert success.refund is not None and success.refund.state is RefundState.SUCCESS
    assert by_account(success) == {
        ("acct-a", "frozen"): -3_000,
        ("acct-b", "frozen"): -1_500,
        (fee_account("ak_x", "CNY"), "frozen"): -500,
        (CLEARING, "available"): 5_000,
    }
    done = success.refund
    assert states.answer_refund(
        PAID, done, ChannelRefundState.SUCCESS, "R-1", new_entry_id()
    ).outcome == ("stale")
    late = states.answer_refund(PAID, done, ChannelRefundState.PROCESSING, "R-1", new_entry_id())
    assert late.outcome == "stale" and not late.alert
    contradiction = states.answer_refund(
        PAID, done, ChannelRefundState.CLOSED, "R-1", new_entry_id()
    )
    assert contradiction.outcome == "exception" and contradiction.entry is None
    other_id = states.answer_refund(PAID, done, ChannelRefundState.SUCCESS, "R-9", new_entry_id())
    assert other_id.outcome == "exception"


def test_a_closed_refund_gives_the_money_back_where_the_shares_are_now() -> None:
    closed = states.answer_refund(PAID, HELD, ChannelRefundState.CLOSED, None, new_entry_id())
    assert closed.refund is not None and closed.refund.state is RefundState.CLOSED
    assert by_account(closed)[("acct-a", "pending")] == 3_000
    assert by_account(closed)[("acct-a", "frozen")] == -3_000
    # Settled while the channel worked on it: the shares are in available now.
    settled = replace(PAID, settled=True)
    after = states.answer_refund(settled, HELD, ChannelRefundState.CLOSED, None, new_entry_id())
    assert by_account(after)[("acct-a", "available")] == 3_000


def test_processing_and_abnormal_answers_note_the_channel_id_and_move_no_money() -> None:
    noted = states.answer_refund(PAID, HELD, ChannelRefundState.PROCESSING, "R-1", new_entry_id())
    assert noted.refund is not None and noted.refund.channel_refund_id == "R-1"
    assert noted.refund.state is RefundState.PROCESSING and noted.entry is None
    abnormal = states.answer_refund(PAID, HELD, ChannelRefundState.ABNORMAL, None, new_entry_id())
    assert abnormal.outcome == "stale" and abnormal.alert and abnormal.entry is None


def test_a_refusal_fails_the_refund_and_gives_back_what_was_held() -> None:
    refused = states.refuse_refund(PAID, HELD, "NOT_ENOUGH: balance", new_entry_id())
    assert refused.refund is not None and refused.refund.state is RefundState.FAILED
    assert refused.refund.error_code == "E035_CHANNEL_REFUSED"
    assert by_account(refused)[("acct-b", "pending")] == 1_500
    unheld = states.refuse_refund(PAID, REFUND, "x", new_entry_id())
    assert unheld.entry is None and unheld.refund is not None
    assert states.refuse_refund(
        PAID, replace(HELD, state=RefundState.SUCCESS), "x", new_entry_id()
    ).outcome == ("stale")


def test_an_alipay_refund_notice_states_the_refunds_in_all_not_this_one() -> None:
    alipay = replace(PAID, channel=Channel.ALIPAY)
    notice = event(EventKind.REFUND, channel=Channel.ALIPAY, refundFen=None, refundedTotalFen=5_000)
    done = states.on_event(alipay, HELD, notice, new_entry_id())
    assert done.refund is not None and done.refund.state is RefundState.SUCCESS
    too_little = event(
        EventKind.REFUND, channel=Channel.ALIPAY, refundFen=None, refundedTotalFen=4_999
    )
    assert states.on_event(alipay, HELD, too_little, new_entry_id()).outcome == "exception"
    too_much = event(
        EventKind.REFUND, channel=Channel.ALIPAY, refundFen=None, refundedTotalFen=10_001
    )
    assert states.on_event(alipay, HELD, too_much, new_entry_id()).outcome == "exception"


def test_refund_notices_are_checked_against_our_refund() -> None:
    wrong_amount = states.on_event(
        PAID, HELD, event(EventKind.REFUND, refundFen=4_000), new_entry_id()
    )
    assert wrong_amount.outcome == "exception"
    wrong_txn = states.on_event(
        PAID, HELD, event(EventKind.REFUND, transactionId="T-9"), new_entry_id()
    )
    assert wrong_txn.outcome == "exception"
    unknown = states.on_event(PAID, None, event(EventKind.REFUND), new_entry_id())
    assert unknown.outcome == "exception"
    good = states.on_event(PAID, HELD, event(EventKind.REFUND), new_entry_id())
    assert good.refund is not None and good.refund.state is RefundState.SUCCESS


def test_a_full_cycle_keeps_every_account_whole_and_clearing_at_paid_minus_refunded() -> None:
    book: dict[str, Balance] = balances()
    paid = states.pay(ORDER, "T-1", new_entry_id())
    assert paid.entry is not None and paid.order is not None
    book.update(apply_entry(book, paid.entry))
    clearing = sum(p.amount for p in paid.entry.postings if p.account_id == CLEARING)
    held = states.hold(paid.order, REFUND, book, new_entry_id())
    assert held.entry is not None and held.refund is not None
    book.update(apply_entry(book, held.entry))
    done = states.answer_refund(
        paid.order, held.refund, ChannelRefundState.SUCCESS, None, new_entry_id()
    )
    assert done.entry is not None
    book.update(apply_entry(book, done.entry))
    clearing += sum(p.amount for p in done.entry.postings if p.account_id == CLEARING)
    assert -clearing == 10_000 - 5_000
    assert book["acct-a"].pending == 3_000 and book["acct-a"].frozen == 0
    assert book[fee_account("ak_x", "CNY")].pending == 500
    assert all(b.available >= 0 and b.frozen >= 0 and b.pending >= 0 for b in book.values())
