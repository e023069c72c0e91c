"""Which channel app and which adapter take an order's payment and refunds, and where the
channel is told to notify.

The adapters (``fundhub.channels.ports.ChannelPayments``: WeChat Pay APIv3, Alipay) and the
channel apps belong to the channels context; the composition roots (the gateway for payments,
payment-worker for refunds) hand them in: ``from_channels`` routes every channel to the
channels context's ``HttpChannelPayments`` and asks its ``ChannelAppStore`` for the active app.
An order records the app (its id and merchant: WeChat Pay's appid and mchid, Alipay's app_id
and seller_id) it was created through; its refunds go through that app, and only notifications
from it count for the order. A channel without an active app that can call the API, or without
an adapter, takes no orders: 503, nothing written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

from fundhub.channels.apps import ChannelApp
from fundhub.channels.events import Channel
from fundhub.channels.payments import notify_url
from fundhub.channels.ports import ChannelPayments
from fundhub.common.config import Settings


class ActiveApps(Protocol):
    """Where the active app of each channel is (``channels.apps.ChannelAppStore``)."""

    async def active(self, channel: Channel) -> ChannelApp | None: ...


class _NoApps:
    async def active(self, channel: Channel) -> ChannelApp | None:
        return None


@dataclass(frozen=True)
class Channels:
    adapters: Mapping[Channel, ChannelPayments] = field(default_factory=dict)
    apps: ActiveApps = field(default_factory=_NoApps)
    notify_url: Callable[[Channel], str] = lambda channel: ""

    def adapter(self, channel: Channel) -> ChannelPayments | None:
        return self.adapters.get(channel)

    async def app(self, channel: Channel) -> ChannelApp | None:
        """The app that takes the channel's new payments, if it can call the channel's API."""
        app = await self.apps.active(channel)
        return app if app is not None and app.can_call_api else None


def from_channels(settings: Settings, payments: ChannelPayments, apps: ActiveApps) -> Channels:
    """Every channel through ``payments`` (which routes by channel), the active app from
    ``apps``, the channels told to notify this deployment's gateway."""
    return Channels(
        adapters={channel: payments for channel in Channel},
        apps=apps,
        notify_url=partial(notify_url, settings),
    )
