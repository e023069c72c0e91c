"""``ChannelPayments`` for a process: each channel's HTTP adapter behind the one port.

    async with open_channel_payments(settings, pool) as payments:
        params = await payments.create_payment(PaymentOrder(...))

The process needs ``FUNDHUB_MASTER_KEY``: the merchant's private keys that sign the requests
are stored sealed with the channel apps (``fundhub channel add``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fundhub.channels.alipay_http import AlipayHttp
from fundhub.channels.apps import ChannelAppStore
from fundhub.channels.calls import channel_session
from fundhub.channels.events import Channel
from fundhub.channels.ports import PaymentOrder, PaymentParams, RefundAnswer, RefundOrder
from fundhub.channels.wechatpay_http import WechatPayHttp
from fundhub.common.config import ALIPAY_CALLBACK_PATH, WECHATPAY_CALLBACK_PATH, Settings
from fundhub.common.db import Pool

CALLBACK_PATHS = {Channel.WECHATPAY: WECHATPAY_CALLBACK_PATH, Channel.ALIPAY: ALIPAY_CALLBACK_PATH}


def notify_url(settings: Settings, channel: Channel) -> str:
    """The ``notify_url`` of a payment or refund: our gateway's route for that channel."""
    return settings.channel_notify_url(CALLBACK_PATHS[channel])


class HttpChannelPayments:
    """Routes each call to its channel's adapter."""

    def __init__(self, wechatpay: WechatPayHttp, alipay: AlipayHttp) -> None:
        self.wechatpay = wechatpay
        self.alipay = alipay

    async def create_payment(self, order: PaymentOrder) -> PaymentParams:
        if order.channel is Channel.WECHATPAY:
            return await self.wechatpay.create_payment(order)
        return await self.alipay.create_payment(order)

    async def refund(self, refund: RefundOrder) -> RefundAnswer:
        if refund.channel is Channel.WECHATPAY:
            return await self.wechatpay.refund(refund)
        return await self.alipay.refund(refund)

    async def query_refund(
        self, channel: Channel, app_id: str, out_refund_no: str, out_trade_no: str | None = None
    ) -> RefundAnswer:
        if channel is Channel.WECHATPAY:
            return await self.wechatpay.query_refund(app_id, out_refund_no)
        return await self.alipay.query_refund(app_id, out_refund_no, out_trade_no)


@asynccontextmanager
async def open_channel_payments(
    settings: Settings, pool: Pool, retries: int = 3
) -> AsyncIterator[HttpChannelPayments]:
    """Both adapters over one connection pool, with the apps' keys (merchant keys opened)."""
    apps = ChannelAppStore(pool, settings.master_keys(), merchant_keys=True)
    async with channel_session() as session:
        timeout_s = settings.channel_timeout_s
        yield HttpChannelPayments(
            WechatPayHttp(
                session, settings.wechatpay_base_url, apps, timeout_s=timeout_s, retries=retries
            ),
            AlipayHttp(
                session, settings.alipay_gateway_url, apps, timeout_s=timeout_s, retries=retries
            ),
        )
