"""The simulated channels' behaviour around the book: what happens when a payer pays, a trade
closes or a refund is asked for, and which notice each of those sends.

WeChat Pay: a payment sends TRANSACTION.SUCCESS to the order's notify_url; a refund is answered
PROCESSING, settles after ``refundDelayMs`` (SUCCESS, or CLOSED at ``refundCloseRate``) and
sends REFUND.SUCCESS / REFUND.CLOSED to the refund's notify_url. Alipay: a payment sends
TRADE_SUCCESS, a close TRADE_CLOSED; a refund is made at once and sends TRADE_SUCCESS with
``out_biz_no`` and ``refund_fee`` (the refunds so far), or TRADE_CLOSED when the trade is
refunded in full, to the payment's notify_url.
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from fundhub.channel_simulator import notices
from fundhub.channel_simulator.bill_desk import BillDesk
from fundhub.channel_simulator.keys import Merchants, OwnKeys
from fundhub.channel_simulator.notifier import Notifier
from fundhub.channel_simulator.trades import Book, Refund, RefundStatus, Trade, TradeState
from fundhub.channels.events import Channel
from fundhub.common.clock import utcnow


class Simulation:
    def __init__(self, keys: OwnKeys, merchants: Merchants, notifier: Notifier) -> None:
        self.keys = keys
        self.merchants = merchants
        self.notifier = notifier
        self.book = Book()
        self.bills = BillDesk(self.book)

    # --- what the payer does -------------------------------------------------------------------

    def pay(
        self, channel: Channel, out_trade_no: str, paid_at: datetime | None = None
    ) -> tuple[Trade, bool]:
        """``paid_at``: the payer paid then (a notice sent late); default now."""
        trade, paid_now = self.book.pay(channel, out_trade_no, paid_at or utcnow())
        if paid_now:
            self.notify_paid(trade)
        return trade, paid_now

    def close(self, channel: Channel, out_trade_no: str) -> tuple[Trade, bool]:
        trade, closed_now = self.book.close(channel, out_trade_no, utcnow())
        if closed_now and channel is Channel.ALIPAY:
            self._alipay_notice(trade, "TRADE_CLOSED", "TRADE_CLOSED")
        return trade, closed_now

    def notify_paid(self, trade: Trade) -> None:
        """Send the payment's notice (again: ``POST /sim/.../notify`` for a demo)."""
        if trade.channel is Channel.WECHATPAY:
            assert trade.paid_at is not None
            resource = notices.transaction_resource(
                appid=trade.app_id,
                mchid=trade.merchant_ref,
                out_trade_no=trade.out_trade_no,
                transaction_id=trade.transaction_id,
                total_fen=trade.total_fen,
                success_time=trade.paid_at,
                trade_type="JSAPI" if trade.payer_openid else "NATIVE",
            )
            self._wechatpay_notice(trade, trade.notify_url, "TRANSACTION.SUCCESS", resource)
        else:
            self._alipay_notice(trade, "TRADE_SUCCESS", "TRADE_SUCCESS")

    # --- refunds ---------------------------------------------------------------------------------

    def refund(
        self,
        channel: Channel,
        out_trade_no: str,
        out_refund_no: str,
        amount_fen: int,
        reason: str,
        notify_url: str | None,
    ) -> tuple[Trade, Refund]:
        now = utcnow()
        trade, refund, created = self.book.refund(
            channel, out_trade_no, out_refund_no, amount_fen, reason, notify_url, now
        )
        if not created:
            return trade, refund
        if channel is Channel.ALIPAY:
            self.book.settle_refund(refund, trade, True, now)  # Alipay refunds at once
            self._alipay_refund_notice(trade, refund)
        else:
            delay = self.notifier.delay_s(self.notifier.behaviour.refund_delay_ms)
            self.notifier.spawn(self._settle_later(trade, refund, delay), f"refund-{out_refund_no}")
        return trade, refund

    async def _settle_later(self, trade: Trade, refund: Refund, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        ok = self.notifier.random.random() >= self.notifier.behaviour.refund_close_rate
        self.book.settle_refund(refund, trade, ok, utcnow())
        if refund.notify_url:
            self._wechatpay_refund_notice(trade, refund)

    def _wechatpay_refund_notice(self, trade: Trade, refund: Refund) -> None:
        assert refund.notify_url is not None
        resource = notices.refund_resource(
            mchid=trade.merchant_ref,
            out_trade_no=trade.out_trade_no,
            transaction_id=trade.transaction_id,
            out_refund_no=refund.out_refund_no,
            refund_id=refund.refund_id,
            refund_status=refund.status.value,
            total_fen=trade.total_fen,
            refund_fen=refund.amount_fen,
            success_time=refund.success_at,
        )
        self._wechatpay_notice(trade, refund.notify_url, f"REFUND.{refund.status.value}", resource)

    def _alipay_refund_notice(self, trade: Trade, refund: Refund) -> None:
        status = "TRADE_CLOSED" if trade.state is TradeState.CLOSED else "TRADE_SUCCESS"
        assert refund.success_at is not None and refund.status is RefundStatus.SUCCESS
        refunded = sum(
            r.amount_fen
            for r in trade.refunds.values()
            if r.status is RefundStatus.SUCCESS and r.created_at <= refund.created_at
        )
        self._alipay_notice(
            trade, status, f"{status}+refund", (refund.out_refund_no, refunded, refund.success_at)
        )

    # --- notices ---------------------------------------------------------------------------------

    def _wechatpay_notice(
        self, trade: Trade, url: str, event_type: str, resource: dict[str, object]
    ) -> None:
        merchant = self.merchants.wechatpay.get(trade.merchant_ref)
        if merchant is None:
            return  # the merchant was dropped meanwhile: nothing to seal the resource with
        notification_id = notices.notification_id()
        body = notices.wechatpay_body(
            notification_id, event_type, resource, merchant.apiv3_key.encode("ascii"), utcnow()
        )
        keys = self.keys

        def post(now: datetime) -> tuple[dict[str, str], bytes]:
            notice = notices.sign_wechatpay(body, keys.platform_key, keys.platform_serial, now)
            return notice.headers, notice.body

        self.notifier.send(
            Channel.WECHATPAY, notification_id, event_type, trade.out_trade_no, url, post
        )

    def _alipay_notice(
        self,
        trade: Trade,
        status: str,
        label: str,
        refund: tuple[str, int, datetime] | None = None,
    ) -> None:
        fields = notices.alipay_fields(
            app_id=trade.app_id,
            seller_id=trade.merchant_ref,
            out_trade_no=trade.out_trade_no,
            trade_no=trade.transaction_id,
            trade_status=status,
            total_fen=trade.total_fen,
            subject=trade.description,
            gmt_create=trade.created_at,
            gmt_payment=trade.paid_at,
            gmt_close=trade.closed_at if status == "TRADE_CLOSED" and refund is None else None,
            refund=refund,
        )
        key = self.keys.alipay_key
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}

        def post(now: datetime) -> tuple[dict[str, str], bytes]:
            return headers, notices.sign_alipay(fields, key, now)

        self.notifier.send(
            Channel.ALIPAY, fields["notify_id"], label, trade.out_trade_no, trade.notify_url, post
        )
