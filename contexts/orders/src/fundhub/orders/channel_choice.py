"""Which channel app and which adapter take an order's payment and refunds, and where the
channel is told to notify.

The adapters (``fundhub.channels.ports.ChannelPayments``: WeChat Pay APIv3, Alipay) belong to
the channels context; the composition roots (the gateway, payment-worker) hand a mapping of
them in. ``installed_adapters`` finds the ones installed: a package announces a factory
``(settings, session) -> ChannelPayments`` under the ``fundhub.channel_payments`` entry-point
group, named by the channel (``WECHATPAY``, ``ALIPAY``), as contexts announce migrations. A
channel without an adapter or an app id takes no orders: they are refused with 503 E013, and
nothing is written.

The app id per channel is a setting (``FUNDHUB_WECHATPAY_APP_ID``, ``FUNDHUB_ALIPAY_APP_ID``)
until the channels context chooses the active app itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import structlog

from fundhub.channels.events import Channel
from fundhub.channels.ports import ChannelPayments
from fundhub.common.config import Settings

log = structlog.get_logger(__name__)

ADAPTER_GROUP = "fundhub.channel_payments"
# The gateway's routes for the channels' notifications (the channels context serves them).
CALLBACK_PATHS: Mapping[Channel, str] = {
    Channel.WECHATPAY: "/callbacks/wechatpay",
    Channel.ALIPAY: "/callbacks/alipay",
}

AdapterFactory = Callable[[Settings, Any], ChannelPayments]


@dataclass(frozen=True)
class Channels:
    adapters: Mapping[Channel, ChannelPayments] = field(default_factory=dict)
    app_ids: Mapping[Channel, str] = field(default_factory=dict)
    notify_base_url: str = ""

    def adapter(self, channel: Channel) -> ChannelPayments | None:
        return self.adapters.get(channel)

    def app_id(self, channel: Channel) -> str | None:
        return self.app_ids.get(channel) or None

    def notify_url(self, channel: Channel) -> str:
        return self.notify_base_url.rstrip("/") + CALLBACK_PATHS[channel]

    def takes(self, channel: Channel) -> bool:
        return self.adapter(channel) is not None and self.app_id(channel) is not None


def configured(settings: Settings, adapters: Mapping[Channel, ChannelPayments]) -> Channels:
    """The adapters given, with the settings' app ids and notify URL."""
    return Channels(
        adapters=dict(adapters),
        app_ids={
            Channel.WECHATPAY: settings.wechatpay_app_id,
            Channel.ALIPAY: settings.alipay_app_id,
        },
        notify_base_url=settings.channel_notify_base_url
        or f"http://{settings.gateway_host}:{settings.gateway_port}",
    )


def installed_adapters(settings: Settings, session: Any) -> dict[Channel, ChannelPayments]:
    """The channel adapters installed packages announce (see the module's docstring)."""
    found: dict[Channel, ChannelPayments] = {}
    for point in entry_points(group=ADAPTER_GROUP):
        try:
            channel = Channel(point.name)
        except ValueError:
            log.error("channel_adapter_for_unknown_channel", name=point.name, value=point.value)
            continue
        factory: AdapterFactory = point.load()
        found[channel] = factory(settings, session)
    missing = [c.value for c in Channel if c not in found]
    if missing:
        log.warning("channels_without_adapter", channels=missing, note="their orders answer 503")
    return found
