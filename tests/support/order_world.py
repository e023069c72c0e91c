"""An order desk wired as the gateway wires it, for tests: real Postgres, the bank simulator's
depository on a thread, a channel over HTTP (``channel_server``), two ACTIVE merchants."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from fundhub.bank_simulator.depository_orders import DepositoryOrders
from fundhub.bank_transfers.bank_apps import BankAppStore
from fundhub.channels.apps import ChannelApp
from fundhub.channels.events import Channel, ChannelEvent
from fundhub.common.config import Settings
from fundhub.common.topics import Topics, topics
from fundhub.orders.admission import OrderDesk, OrderView, Timing
from fundhub.orders.channel_choice import Channels
from fundhub.orders.depository_http import HttpDepository
from fundhub.orders.messages import EventMessage
from fundhub.orders.notifications import Tally, apply_channel_events
from fundhub.orders.request import OrderRequest, parse_order_request
from fundhub.orders.wire import order_body
from support.channel_events import APPS, paid
from support.channel_server import ChannelServer, HttpChannel, channel_serving
from support.depository import depository_serving, trust_bank
from support.env import ModuleEnv
from support.merchants import Merchant, add_merchant


def order_settings(env: ModuleEnv, **changes: Any) -> Settings:
    return env.settings.model_copy(update=changes)


class TestApps:
    """The active app of each channel, as ``channels.apps.ChannelAppStore`` would answer
    (TEST apps: the test channel server takes any)."""

    async def active(self, channel: Channel) -> ChannelApp | None:
        app_id, merchant_ref = APPS[channel]
        return ChannelApp(channel, app_id, merchant_ref, True, can_call_api=True)


@dataclass
class World:
    env: ModuleEnv
    settings: Settings
    names: Topics
    desk: OrderDesk
    channels: Channels
    channel: ChannelServer
    adapters: dict[Channel, HttpChannel]
    depository: DepositoryOrders
    depository_url: str
    session: aiohttp.ClientSession
    a: Merchant
    b: Merchant

    def desk_with_depository(self, url: str, timeout_s: float = 1.0) -> OrderDesk:
        depository = HttpDepository(
            self.session, url, BankAppStore(self.env.pool), self.env.app_id, timeout_s
        )
        return OrderDesk(
            self.env.pool,
            self.names,
            self.channels,
            depository,
            Timing(channel_timeout_s=2.0, refund_first_poll_s=0.3),
        )


@asynccontextmanager
async def order_world(env: ModuleEnv, key_id: str, **settings: Any) -> AsyncIterator[World]:
    await trust_bank(env.pool, env)
    configured_settings = order_settings(env, **settings)
    a = await add_merchant(env.pool, key_id)
    b = await add_merchant(env.pool, key_id)
    with depository_serving(env) as (held, url):
        async with channel_serving() as served, aiohttp.ClientSession() as session:
            server, adapters = served.server, served.adapters
            channels = Channels(
                adapters, TestApps(), lambda c: f"https://gateway.example/callbacks/{c.lower()}"
            )
            depository = HttpDepository(session, url, BankAppStore(env.pool), env.app_id, 2.0)
            names = topics(configured_settings)
            desk = OrderDesk(
                env.pool,
                names,
                channels,
                depository,
                Timing(channel_timeout_s=2.0, refund_first_poll_s=0.3),
            )
            yield World(
                env,
                configured_settings,
                names,
                desk,
                channels,
                server,
                adapters,
                held,
                url,
                session,
                a,
                b,
            )


class Receiver(Protocol):
    """A merchant an order splits to: made in the database (``Merchant``) or through the API
    (``onboarding.Onboarded``)."""

    @property
    def merchant_id(self) -> str: ...


def order(
    order_no: str,
    receivers: Sequence[tuple[Receiver, int]],
    fee: int,
    channel: str = "WECHATPAY",
    **extra: Any,
) -> OrderRequest:
    return parse_order_request(
        json.dumps(order_json(order_no, receivers, fee, channel, **extra)).encode()
    )


def order_json(
    order_no: str,
    receivers: Sequence[tuple[Receiver, int]],
    fee: int,
    channel: str = "WECHATPAY",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "orderNo": order_no,
        "amount": sum(n for _, n in receivers) + fee,
        "currency": "CNY",
        "channel": channel,
        "description": "a test order",
        "splits": [{"merchantId": m.merchant_id, "amount": n} for m, n in receivers],
        "platformFee": fee,
        **extra,
    }


def body_of(view: OrderView) -> dict[str, Any]:
    return order_body(view.order, view.parts, view.refunds)


async def apply_events(world: World, events: Sequence[ChannelEvent]) -> Tally:
    """The consumer's work on ``events`` as one batch, without Kafka in between."""
    async with world.env.pool.acquire() as conn, conn.transaction():
        return await apply_channel_events(
            conn, world.names, [EventMessage(e.message_id(), "test", e) for e in events]
        )


async def notify_paid(world: World, view: OrderView) -> Tally:
    return await apply_events(world, [paid(body_of(view))])
