"""An order's and a refund's life, and what each event does to them. Pure: callers do the I/O.

    order    CREATED -> AWAITING_PAYMENT -> PAID
             CREATED | AWAITING_PAYMENT -> CLOSED (the channel closed it unpaid)
             CREATED -> FAILED (the depository or the channel refused it)
    refund   PROCESSING -> SUCCESS | CLOSED | FAILED

The channels notify more than once, late and out of order, and payment-worker's answers from
the channel race their notifications; so a state only moves forward, and an event that does not
move it is *stale*: it changes nothing. A verified notification that cannot be about the order
as we know it (no such order, another app, another amount, a refund we never asked for, a
second payment, a result contradicting a final one) is an *exception*: it moves no money, is
kept for reconciliation and raises an alert.

Two moves post past a stale-looking state, because the money is real: a payment notified for an
order the channel had said was CLOSED (the channel has the money: PAID, with an alert), and a
refund's result, whichever of the notification or the answer comes first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal

from fundhub.channels.events import Channel, ChannelEvent, EventKind
from fundhub.channels.ports import RefundState as ChannelRefundState
from fundhub.common.errors import ErrorCode
from fundhub.ledger.rules import Balance, Bucket, InsufficientFunds, JournalEntry, apply_entry
from fundhub.orders import postings
from fundhub.orders.postings import Part

INSUFFICIENT_FUNDS = ErrorCode.INSUFFICIENT_FUNDS.code
CHANNEL_REFUSED = ErrorCode.CHANNEL_REFUSED.code
DEPOSITORY_REFUSED = ErrorCode.DEPOSITORY_REFUSED.code


class OrderState(StrEnum):
    CREATED = "CREATED"  # recorded; the depository's registration or the payment not done yet
    AWAITING_PAYMENT = "AWAITING_PAYMENT"  # the channel's payment exists: its params are out
    PAID = "PAID"
    CLOSED = "CLOSED"  # the channel closed it unpaid
    FAILED = "FAILED"  # the depository or the channel refused it: it can never be paid

    @property
    def payable(self) -> bool:
        return self in (OrderState.CREATED, OrderState.AWAITING_PAYMENT)

    @property
    def biz_code(self) -> str:
        if self is OrderState.PAID:
            return "SUCCESS"
        return "PROCESSING" if self.payable else "FAILED"


class RefundState(StrEnum):
    PROCESSING = "PROCESSING"
    SUCCESS = "SUCCESS"
    CLOSED = "CLOSED"  # the channel gave up: the money went back where it was taken
    FAILED = "FAILED"  # refused before the channel paid anything (funds, or the channel)

    @property
    def is_final(self) -> bool:
        return self is not RefundState.PROCESSING

    @property
    def biz_code(self) -> str:
        if self is RefundState.PROCESSING:
            return "PROCESSING"
        return "SUCCESS" if self is RefundState.SUCCESS else "FAILED"


@dataclass(frozen=True)
class Order:
    order_id: str
    state: OrderState
    amount: int
    currency: str
    channel: Channel
    app_id: str
    parts: tuple[Part, ...]
    merchant_ref: str | None = None  # the app's merchant: WeChat Pay's mchid, Alipay's seller_id
    transaction_id: str | None = None
    settled: bool = False  # set by settlement: the parts' shares moved pending -> available

    @property
    def share_bucket(self) -> Bucket:
        """Where the order's shares are now: refunds take from and give back to it."""
        return Bucket.AVAILABLE if self.settled else Bucket.PENDING


@dataclass(frozen=True)
class Refund:
    refund_id: str  # ours, the channel's out_refund_no
    amount: int
    allocation: tuple[int, ...]  # fen per part, in the parts' order
    state: RefundState
    held: bool = False  # its money is frozen on the parts' accounts
    source: Bucket | None = None  # where it was taken from
    channel_refund_id: str | None = None
    error_code: str | None = None
    message: str | None = None


Outcome = Literal["applied", "stale", "exception"]


@dataclass(frozen=True)
class Move:
    """What one event does: the order's and the refund's new states (None: unchanged), the
    entry to post with them, and whether a person must look (``alert``; an ``exception``
    reason means the event is also kept for reconciliation)."""

    outcome: Outcome
    note: str
    order: Order | None = None
    refund: Refund | None = None
    entry: JournalEntry | None = None
    alert: bool = False
    exception: str | None = None


def _exception(reason: str) -> Move:
    return Move("exception", f"kept for reconciliation: {reason}", alert=True, exception=reason)


def _stale(note: str, alert: bool = False) -> Move:
    return Move("stale", note, alert=alert)


# --- the channel's notifications ---------------------------------------------------------------


def on_event(
    order: Order | None, refund: Refund | None, event: ChannelEvent, entry_id: str
) -> Move:
    """What a verified notification does. ``refund``: ours named by ``out_refund_no`` (of this
    order), for a REFUND event."""
    if order is None:
        return _exception(f"no order {event.out_trade_no}")
    if (
        event.channel is not order.channel
        or event.app_id != order.app_id
        or (order.merchant_ref is not None and event.merchant_ref != order.merchant_ref)
    ):
        return _exception(
            f"{event.channel.value} app {event.app_id} ({event.merchant_ref}) notified about"
            f" order {order.order_id}, which was sent through {order.channel.value} app"
            f" {order.app_id} ({order.merchant_ref})"
        )
    if event.total_fen != order.amount:
        return _exception(f"total {event.total_fen} != the order's amount {order.amount}")
    if event.kind is EventKind.PAYMENT:
        return pay(order, event.transaction_id, entry_id)
    if event.kind is EventKind.CLOSED:
        return close(order)
    if refund is None:
        return _exception(f"no refund {event.out_refund_no} of order {order.order_id}")
    # WeChat Pay states the refund's amount; Alipay only the order's refunds in all so far.
    if event.refund_fen is not None and event.refund_fen != refund.amount:
        return _exception(
            f"refund {event.refund_fen} != refund {refund.refund_id}'s {refund.amount}"
        )
    if event.refunded_total_fen is not None and not (
        refund.amount <= event.refunded_total_fen <= order.amount
    ):
        return _exception(
            f"refunds in all {event.refunded_total_fen} cannot include refund"
            f" {refund.refund_id}'s {refund.amount} of an order of {order.amount}"
        )
    if event.refund_status is None:
        return _exception("a refund notice without a refund status")
    if order.transaction_id is not None and event.transaction_id != order.transaction_id:
        return _exception(
            f"refund of transaction {event.transaction_id}, the order was paid by "
            f"{order.transaction_id}"
        )
    answer = ChannelRefundState(event.refund_status.value)
    return answer_refund(order, refund, answer, event.refund_id, entry_id)


def pay(order: Order, transaction_id: str, entry_id: str) -> Move:
    """The channel says the order is paid: clearing -> the parts' pending, once."""
    if order.state is OrderState.PAID:
        if transaction_id == order.transaction_id:
            return _stale("PAYMENT for a PAID order: duplicate")
        return _exception(
            f"a second payment (transaction {transaction_id}) for an order paid by "
            f"{order.transaction_id}"
        )
    if order.state is OrderState.FAILED:
        return _exception("a payment for an order the depository or the channel refused")
    entry = postings.paid(entry_id, order.order_id, order.channel, order.currency, order.parts)
    moved = replace(order, state=OrderState.PAID, transaction_id=transaction_id)
    if order.state is OrderState.CLOSED:
        note = "CLOSED -> PAID: the channel took the money after closing the order; posted"
        return Move("applied", note, order=moved, entry=entry, alert=True)
    return Move("applied", f"{order.state.value} -> PAID", order=moved, entry=entry)


def close(order: Order) -> Move:
    """The channel closed the order unpaid."""
    if order.state.payable:
        moved = replace(order, state=OrderState.CLOSED)
        return Move("applied", f"{order.state.value} -> CLOSED", order=moved)
    if order.state is OrderState.PAID:
        return _exception("CLOSED (never paid) for an order the channel said was paid")
    return _stale(f"CLOSED for an order {order.state.value}")


# --- refunds -----------------------------------------------------------------------------------


def hold(order: Order, refund: Refund, balances: Mapping[str, Balance], entry_id: str) -> Move:
    """Take a new refund's money: each part's share from where the order's shares are (pending
    before settlement, available after) to frozen. Not there: FAILED E004, nothing posted.
    ``balances``: the parts' accounts, locked by the caller."""
    if refund.state is not RefundState.PROCESSING or refund.held:
        return _stale(f"hold for a refund {refund.state.value}{' held' if refund.held else ''}")
    if order.state is not OrderState.PAID:  # admission refuses these; a bug otherwise
        failed = _failed(refund, ErrorCode.ORDER_NOT_PAID.code, "the order is not paid")
        return Move("applied", "new -> FAILED: the order is not paid", refund=failed, alert=True)
    source = order.share_bucket
    entry = postings.held(
        entry_id, refund.refund_id, order.currency, order.parts, refund.allocation, source
    )
    try:
        apply_entry(balances, entry)
    except InsufficientFunds as exc:
        message = f"a receiver's {source.value} balance does not cover its share of the refund"
        failed = _failed(refund, INSUFFICIENT_FUNDS, message)
        note = f"new -> FAILED: {exc.account_id} {source.value} {exc.had} < {exc.needed}"
        return Move("applied", note, refund=failed)
    moved = replace(refund, held=True, source=source)
    return Move(
        "applied", f"new: {refund.amount} held from {source.value}", refund=moved, entry=entry
    )


def answer_refund(
    order: Order,
    refund: Refund,
    answer: ChannelRefundState,
    channel_refund_id: str | None,
    entry_id: str,
) -> Move:
    """The channel's word on a refund (its notification, or its answer to our request or
    query): SUCCESS sends the frozen money to clearing, CLOSED gives it back; once."""
    if (
        refund.channel_refund_id is not None
        and channel_refund_id is not None
        and channel_refund_id != refund.channel_refund_id
    ):
        return _exception(
            f"refund {refund.refund_id}: the channel's id {channel_refund_id} != "
            f"{refund.channel_refund_id}"
        )
    noted = refund.channel_refund_id or channel_refund_id
    seen = f"{answer.value} for a refund {refund.state.value}"
    if refund.state is RefundState.PROCESSING:
        if not refund.held:
            return _stale(f"{seen} whose money is not held yet", alert=True)
        if answer is ChannelRefundState.PROCESSING or answer is ChannelRefundState.ABNORMAL:
            abnormal = answer is ChannelRefundState.ABNORMAL
            note = f"{seen}: the channel needs someone to act" if abnormal else f"{seen}: noted"
            if noted != refund.channel_refund_id:
                moved = replace(refund, channel_refund_id=noted)
                return Move("applied", note, refund=moved, alert=abnormal)
            return _stale(note, alert=abnormal)
        if answer is ChannelRefundState.SUCCESS:
            entry = postings.refunded(
                entry_id,
                refund.refund_id,
                order.channel,
                order.currency,
                order.parts,
                refund.allocation,
            )
            moved = replace(refund, state=RefundState.SUCCESS, channel_refund_id=noted)
            return Move("applied", "PROCESSING -> SUCCESS", refund=moved, entry=entry)
        moved = _failed(
            refund, CHANNEL_REFUSED, "the channel closed the refund", RefundState.CLOSED, noted
        )
        return _give_back(order, refund, moved, entry_id, "PROCESSING -> CLOSED")
    if answer.value == refund.state.value:
        return _stale(f"{seen}: duplicate")
    if answer in (ChannelRefundState.PROCESSING, ChannelRefundState.ABNORMAL):
        return _stale(f"{seen}: late")
    if refund.state is RefundState.FAILED and answer is ChannelRefundState.CLOSED:
        return _stale(f"{seen}: it did not happen either way")
    return _exception(f"refund {refund.refund_id}: {seen} contradicts the recorded result")


def refuse_refund(order: Order, refund: Refund, reason: str, entry_id: str) -> Move:
    """The channel refused the refund request for good: FAILED, the money given back."""
    if refund.state is not RefundState.PROCESSING:
        return _stale(f"a refusal for a refund {refund.state.value}")
    moved = _failed(refund, CHANNEL_REFUSED, reason)
    if not refund.held:
        return Move("applied", "PROCESSING -> FAILED: refused", refund=moved)
    return _give_back(order, refund, moved, entry_id, "PROCESSING -> FAILED: refused")


def _give_back(order: Order, refund: Refund, moved: Refund, entry_id: str, note: str) -> Move:
    """Frozen back to where the order's shares are now: pending, or available once settled
    (the share the refund was taken from has moved there meanwhile)."""
    target = order.share_bucket
    entry = postings.given_back(
        entry_id, refund.refund_id, order.currency, order.parts, refund.allocation, target
    )
    return Move("applied", f"{note}; given back to {target.value}", refund=moved, entry=entry)


def _failed(
    refund: Refund,
    code: str,
    message: str,
    state: RefundState = RefundState.FAILED,
    channel_refund_id: str | None = None,
) -> Refund:
    return replace(
        refund,
        state=state,
        error_code=code,
        message=message,
        channel_refund_id=channel_refund_id or refund.channel_refund_id,
    )
