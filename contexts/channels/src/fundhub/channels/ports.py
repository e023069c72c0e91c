"""What the orders context asks of a payment channel: the port and its types. No I/O.

Each channel has an adapter (WeChat Pay APIv3, Alipay) that implements ``ChannelPayments``
against the real API's shape (the channel simulator speaks it). The rules every adapter keeps:
a payment is created under the order's ``out_trade_no`` and a refund under its
``out_refund_no``, and only ever under them, so a retry the channel already saw is
deduplicated by the channel instead of charging or refunding twice. An answer that never came
is not a failure: the caller asks again (``query_refund``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from fundhub.channels.events import Channel, RefundStatus


class ChannelUnavailable(Exception):
    """The channel could not be reached or answered 5xx: try again later, same ids."""


# ``ChannelRefused.code`` when the channel has no such refund (a query for a refund it never
# received): the caller sends the refund again under the same ``out_refund_no``.
REFUND_NOT_FOUND = "REFUND_NOT_FOUND"


class ChannelRefused(Exception):
    """The channel refused the request for good (its code and message, for the caller)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class PaymentOrder:
    channel: Channel
    app_id: str  # which of our channel apps takes the payment
    out_trade_no: str
    amount_fen: int
    currency: str
    description: str
    notify_url: str  # where the channel notifies (our /callbacks/wechatpay or /callbacks/alipay)
    # WeChat Pay: with the payer's openid the payment is a JSAPI one (params: the wx.requestPayment
    # fields, signed), without it a native one (params: ``code_url``). Alipay ignores it.
    payer_openid: str | None = None


@dataclass(frozen=True)
class PaymentParams:
    """What the platform's checkout needs: WeChat's prepay_id / code_url, Alipay's qr_code."""

    channel: Channel
    params: Mapping[str, str]


class RefundState(StrEnum):
    PROCESSING = "PROCESSING"
    SUCCESS = RefundStatus.SUCCESS.value
    CLOSED = RefundStatus.CLOSED.value
    ABNORMAL = RefundStatus.ABNORMAL.value


@dataclass(frozen=True)
class RefundOrder:
    channel: Channel
    app_id: str
    out_trade_no: str
    out_refund_no: str
    refund_fen: int
    total_fen: int
    reason: str
    notify_url: str


@dataclass(frozen=True)
class RefundAnswer:
    out_refund_no: str
    refund_id: str | None
    state: RefundState


class ChannelPayments(Protocol):
    async def create_payment(self, order: PaymentOrder) -> PaymentParams: ...

    async def refund(self, refund: RefundOrder) -> RefundAnswer: ...

    async def query_refund(
        self, channel: Channel, app_id: str, out_refund_no: str, out_trade_no: str | None = None
    ) -> RefundAnswer:
        """Alipay's refund query needs the order's ``out_trade_no`` as well (WeChat Pay's does
        not); the Alipay adapter refuses a query without it (ValueError)."""
        ...
