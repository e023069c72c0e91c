"""Where each source's file of a day comes from: its download API, through the fetchers of
``fundhub.reconciliation`` (the bank's daily file; WeChat Pay's trade bill and Alipay's bill
zip with the active app's keys). One signature, so the daily loop does not care which."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date

import aiohttp

from fundhub.channels.apps import ChannelAppStore
from fundhub.channels.events import Channel
from fundhub.common.config import Settings
from fundhub.reconciliation.alipay_bill_http import fetch_alipay_bill
from fundhub.reconciliation.bank_file_http import fetch_bank_file
from fundhub.reconciliation.download_http import REFUSED, StatementUnavailable
from fundhub.reconciliation.statement import Source
from fundhub.reconciliation.wechatpay_bill_http import fetch_wechatpay_bill

# (file name, bytes) of a source's day, or StatementUnavailable.
Fetcher = Callable[[Source, date], Awaitable[tuple[str, bytes]]]


def download_fetcher(
    settings: Settings, session: aiohttp.ClientSession, apps: ChannelAppStore
) -> Fetcher:
    async def fetch(source: Source, day: date) -> tuple[str, bytes]:
        if source is Source.BANK:
            return await fetch_bank_file(session, settings.bank_base_url, settings.bank_app_id, day)
        if source is Source.WECHATPAY:
            app = await apps.active(Channel.WECHATPAY)
            keys = None if app is None else await apps.wechatpay(app.app_id)
            if keys is None:
                raise StatementUnavailable(REFUSED, "no active WeChat Pay app")
            data = await fetch_wechatpay_bill(session, settings.wechatpay_base_url, keys, day)
            return f"wechatpay-{keys.mchid}-{day:%Y%m%d}.csv", data
        app = await apps.active(Channel.ALIPAY)
        alipay_keys = None if app is None else await apps.alipay(app.app_id)
        if alipay_keys is None:
            raise StatementUnavailable(REFUSED, "no active Alipay app")
        data = await fetch_alipay_bill(session, settings.alipay_gateway_url, alipay_keys, day)
        return f"alipay-{alipay_keys.seller_id}-{day:%Y%m%d}.zip", data

    return fetch
