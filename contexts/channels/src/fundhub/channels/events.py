"""A verified channel notification, as it travels on ``channels.notify.v1``. No I/O.

The gateway checks the channel's signature (and, for WeChat Pay, decrypts the resource), turns
either channel's notification into one ``ChannelEvent`` and publishes it keyed by
``out_trade_no``, so every event of one order lands on one partition, in arrival order. The
orders context consumes it: it matches the order, posts the payment or the refund once, and
keeps what matches nothing as an exception for reconciliation.

Amounts are integers in fen: WeChat Pay sends fen, Alipay's yuan strings are converted exactly
(``fundhub.common.money``), never through a float.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from fundhub.common.envelope import Envelope

# The envelope's ``type`` on ``channels.notify.v1``.
EVENT_TYPE = "channel.notified"


class Channel(StrEnum):
    WECHATPAY = "WECHATPAY"
    ALIPAY = "ALIPAY"


class EventKind(StrEnum):
    PAYMENT = (
        "PAYMENT"  # WeChat TRANSACTION.SUCCESS; Alipay TRADE_SUCCESS/TRADE_FINISHED, no refund
    )
    REFUND = "REFUND"  # WeChat REFUND.*; Alipay a notice carrying out_biz_no and refund_fee
    CLOSED = "CLOSED"  # the payment will never be made (Alipay TRADE_CLOSED without a refund)


class RefundStatus(StrEnum):
    SUCCESS = "SUCCESS"
    CLOSED = "CLOSED"  # the channel gave up: the refund did not happen
    ABNORMAL = "ABNORMAL"  # not final: the channel needs someone to act (WeChat REFUND.ABNORMAL)


class ChannelEvent(BaseModel):
    """The ``data`` of a ``channel.notified`` envelope."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    channel: Channel
    kind: EventKind
    # Whose notification: WeChat Pay's appid and mchid, Alipay's app_id and seller_id. The
    # orders context checks them against the order's channel app (another app's notification
    # posts nothing).
    app_id: str = Field(alias="appId", min_length=1, max_length=64)
    merchant_ref: str = Field(alias="merchantRef", min_length=1, max_length=64)
    # The channel's id of this notification (WeChat ``id``, Alipay ``notify_id``): stable
    # across the channel's retries, so they share one message id downstream.
    notification_id: str = Field(alias="notificationId", min_length=1, max_length=128)
    out_trade_no: str = Field(alias="outTradeNo", min_length=1, max_length=64)
    transaction_id: str = Field(alias="transactionId", min_length=1, max_length=64)
    # The order's total as the channel states it, in fen.
    total_fen: int = Field(alias="totalFen", ge=0)
    occurred_at: datetime = Field(alias="occurredAt")
    # Refund events only.
    out_refund_no: str | None = Field(default=None, alias="outRefundNo", max_length=64)
    refund_id: str | None = Field(default=None, alias="refundId", max_length=64)
    # This refund's amount, when the channel says it (WeChat Pay's ``amount.refund``). Alipay's
    # notice does not: it carries ``refund_fee``, the order's refunds IN ALL so far, given as
    # ``refunded_total_fen``; its ``refund_fen`` is None (the orders context knows the amount
    # of the refund named by ``out_refund_no``).
    refund_fen: int | None = Field(default=None, alias="refundFen", ge=0)
    refund_status: RefundStatus | None = Field(default=None, alias="refundStatus")
    refunded_total_fen: int | None = Field(default=None, alias="refundedTotalFen", ge=0)

    def message_id(self) -> str:
        """Content-derived, so a channel's retries and duplicates are one message."""
        return f"{self.channel.value}:{self.notification_id}"

    def to_envelope(self, correlation_id: str) -> Envelope:
        """The ``channel.notified`` envelope, under ``message_id()``."""
        return Envelope(
            id=self.message_id(),
            type=EVENT_TYPE,
            correlation_id=correlation_id,
            data=self.model_dump(mode="json", by_alias=True),
        )

    @classmethod
    def from_envelope(cls, envelope: Envelope) -> ChannelEvent:
        """Read back; raises pydantic's ValidationError for anything that is not one."""
        return cls.model_validate(envelope.data)
