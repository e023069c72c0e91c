"""The channels' books, as the simulator keeps them: payments (trades) and their refunds.

Idempotent as the channels are: a payment is one ``out_trade_no`` (sent again with the same
amount, it is the same payment; with another, a conflict), a refund one ``out_refund_no``
(again the same refund, or a conflict). A refund is taken only from a paid trade and never
beyond what is left of it, the refunds still processing counted. In memory: the simulator
forgets everything when it stops, as its bank sibling does.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from fundhub.channels.events import Channel


class TradeState(StrEnum):
    NOTPAY = "NOTPAY"
    SUCCESS = "SUCCESS"  # paid (and refundable)
    REFUND = "REFUND"  # paid, then refunded in part or in full (WeChat Pay's name)
    CLOSED = "CLOSED"  # never paid, or (Alipay) fully refunded


class RefundStatus(StrEnum):
    PROCESSING = "PROCESSING"
    SUCCESS = "SUCCESS"
    CLOSED = "CLOSED"


class TradeError(Exception):
    """A request the channel refuses: its code and message, as each channel words them."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class NotFound(TradeError):
    pass


class Conflict(TradeError):
    pass


def _digits(count: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(count))


@dataclass
class Refund:
    out_refund_no: str
    refund_id: str
    amount_fen: int
    reason: str
    notify_url: str | None
    created_at: datetime
    status: RefundStatus = RefundStatus.PROCESSING
    success_at: datetime | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "outRefundNo": self.out_refund_no,
            "refundId": self.refund_id,
            "amountFen": self.amount_fen,
            "status": self.status.value,
        }


@dataclass
class Trade:
    channel: Channel
    app_id: str
    merchant_ref: str  # WeChat Pay mchid, Alipay seller_id
    out_trade_no: str
    total_fen: int
    description: str
    notify_url: str
    created_at: datetime
    transaction_id: str
    payer_openid: str | None = None
    state: TradeState = TradeState.NOTPAY
    paid_at: datetime | None = None
    closed_at: datetime | None = None
    refunds: dict[str, Refund] = field(default_factory=dict)

    @property
    def refunded_fen(self) -> int:
        """What is refunded or being refunded: none of it can be refunded again."""
        return sum(
            r.amount_fen for r in self.refunds.values() if r.status is not RefundStatus.CLOSED
        )

    @property
    def refunded_done_fen(self) -> int:
        return sum(r.amount_fen for r in self.refunds.values() if r.status is RefundStatus.SUCCESS)

    @property
    def paid(self) -> bool:
        return self.paid_at is not None

    def to_json(self) -> dict[str, object]:
        return {
            "channel": self.channel.value,
            "appId": self.app_id,
            "merchantRef": self.merchant_ref,
            "outTradeNo": self.out_trade_no,
            "transactionId": self.transaction_id,
            "totalFen": self.total_fen,
            "state": self.state.value,
            "paidAt": None if self.paid_at is None else self.paid_at.isoformat(timespec="seconds"),
            "refundedFen": self.refunded_done_fen,
            "refunds": [r.to_json() for r in self.refunds.values()],
        }


class Book:
    """Every trade of both channels, by (channel, out_trade_no), and refunds by their number."""

    def __init__(self) -> None:
        self._trades: dict[tuple[Channel, str], Trade] = {}
        self._refunds: dict[tuple[Channel, str], tuple[Trade, Refund]] = {}

    def __len__(self) -> int:
        return len(self._trades)

    def create(
        self,
        channel: Channel,
        app_id: str,
        merchant_ref: str,
        out_trade_no: str,
        total_fen: int,
        description: str,
        notify_url: str,
        now: datetime,
        payer_openid: str | None = None,
    ) -> Trade:
        """The trade, made once: the same order again is the same trade."""
        if total_fen <= 0:
            raise TradeError("PARAM_ERROR", "the amount must be positive")
        known = self._trades.get((channel, out_trade_no))
        if known is not None:
            if (known.app_id, known.merchant_ref, known.total_fen) != (
                app_id,
                merchant_ref,
                total_fen,
            ):
                raise Conflict("OUT_TRADE_NO_USED", "out_trade_no used with other parameters")
            return known
        prefix = "4200" if channel is Channel.WECHATPAY else "2026"
        trade = Trade(
            channel=channel,
            app_id=app_id,
            merchant_ref=merchant_ref,
            out_trade_no=out_trade_no,
            total_fen=total_fen,
            description=description,
            notify_url=notify_url,
            created_at=now,
            transaction_id=prefix + _digits(24),
            payer_openid=payer_openid,
        )
        self._trades[(channel, out_trade_no)] = trade
        return trade

    def trades(self, channel: Channel) -> list[Trade]:
        """Every trade of the channel (its bills are made from them)."""
        return [trade for (of, _), trade in self._trades.items() if of is channel]

    def get(self, channel: Channel, out_trade_no: str) -> Trade:
        trade = self._trades.get((channel, out_trade_no))
        if trade is None:
            raise NotFound("ORDER_NOT_EXIST", f"no trade {out_trade_no}")
        return trade

    def pay(self, channel: Channel, out_trade_no: str, now: datetime) -> tuple[Trade, bool]:
        """The payer pays; False when it was paid already (nothing new to tell)."""
        trade = self.get(channel, out_trade_no)
        if trade.state is TradeState.CLOSED and not trade.paid:
            raise Conflict("ORDER_CLOSED", f"trade {out_trade_no} is closed")
        if trade.paid:
            return trade, False
        trade.state, trade.paid_at = TradeState.SUCCESS, now
        return trade, True

    def close(self, channel: Channel, out_trade_no: str, now: datetime) -> tuple[Trade, bool]:
        """An unpaid trade times out; False when it was closed already."""
        trade = self.get(channel, out_trade_no)
        if trade.paid:
            raise Conflict("ORDER_PAID", f"trade {out_trade_no} is paid")
        if trade.state is TradeState.CLOSED:
            return trade, False
        trade.state, trade.closed_at = TradeState.CLOSED, now
        return trade, True

    def refund(
        self,
        channel: Channel,
        out_trade_no: str,
        out_refund_no: str,
        amount_fen: int,
        reason: str,
        notify_url: str | None,
        now: datetime,
    ) -> tuple[Trade, Refund, bool]:
        """A refund of a paid trade, within what is left; True when it is new."""
        known = self._refunds.get((channel, out_refund_no))
        if known is not None:
            trade, refund = known
            if trade.out_trade_no != out_trade_no or refund.amount_fen != amount_fen:
                raise Conflict("REFUND_NO_USED", "out_refund_no used with other parameters")
            return trade, refund, False
        trade = self.get(channel, out_trade_no)
        if not trade.paid:
            raise TradeError("TRADE_NOT_PAID", f"trade {out_trade_no} is not paid")
        if amount_fen <= 0 or amount_fen > trade.total_fen - trade.refunded_fen:
            raise TradeError("REFUND_TOO_MUCH", "the refund exceeds what is left to refund")
        prefix = "5030" if channel is Channel.WECHATPAY else "R"
        refund = Refund(out_refund_no, prefix + _digits(24), amount_fen, reason, notify_url, now)
        trade.refunds[out_refund_no] = refund
        self._refunds[(channel, out_refund_no)] = (trade, refund)
        if trade.state is TradeState.SUCCESS:
            trade.state = TradeState.REFUND
        return trade, refund, True

    def refund_of(self, channel: Channel, out_refund_no: str) -> tuple[Trade, Refund]:
        known = self._refunds.get((channel, out_refund_no))
        if known is None:
            raise NotFound("RESOURCE_NOT_EXISTS", f"no refund {out_refund_no}")
        return known

    def settle_refund(self, refund: Refund, trade: Trade, ok: bool, now: datetime) -> None:
        """A processing refund ends: SUCCESS (the money went back) or CLOSED (it did not)."""
        if refund.status is not RefundStatus.PROCESSING:
            return
        if ok:
            refund.status, refund.success_at = RefundStatus.SUCCESS, now
        else:
            refund.status = RefundStatus.CLOSED
        if trade.channel is Channel.ALIPAY and trade.refunded_done_fen == trade.total_fen:
            trade.state = TradeState.CLOSED  # Alipay closes a fully refunded trade
