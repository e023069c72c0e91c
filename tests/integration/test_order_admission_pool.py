"""Order creation with more requests than the pool has connections, the channel app read from
the real, expiring store on that same pool (as the gateway wires it): every request completes.

The app used to be looked up inside the order's transaction; once the store's cache expired,
each request held a connection while it waited for another to read the app, and with the pool
full none ever ended (found by bench/orders_e2e.py: the gateway stopped answering)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from support.channel_events import APPS
from support.env import ModuleEnv
from support.order_world import World, order, order_world

from fundhub.bank_transfers.bank_apps import BankAppStore
from fundhub.channels.apps import ChannelAppStore, upsert_wechatpay_app
from fundhub.channels.events import Channel
from fundhub.common.db import connect_pool
from fundhub.common.signing import generate_rsa_keypair
from fundhub.orders.admission import OrderDesk, Timing
from fundhub.orders.channel_choice import Channels
from fundhub.orders.depository_http import HttpDepository

KEY = "ak_000000000000000000pool"
POOL_SIZE = 2


@pytest.fixture(scope="module")
async def world(env: ModuleEnv) -> AsyncIterator[World]:
    async with order_world(env, KEY) as built:
        yield built


async def test_more_creations_than_connections_all_complete_while_the_app_cache_reloads(
    world: World, env: ModuleEnv
) -> None:
    master_key = env.settings.master_key
    assert master_key is not None
    private_pem, public_pem = generate_rsa_keypair()
    appid, mchid = APPS[Channel.WECHATPAY]
    async with env.pool.acquire() as conn:
        await upsert_wechatpay_app(
            conn,
            master_key,
            mchid=mchid,
            appid=appid,
            apiv3_key=b"TEST-ONLY-apiv3-key-32-bytes-000",
            platform_keys=[("TESTSERIAL0001", public_pem)],
            merchant_key=("TESTMERCHANT0001", private_pem),
        )
    pool = await connect_pool(env.settings.database_url, max_size=POOL_SIZE)
    try:
        # ttl 0: every lookup reads the database, as each one after an expiry does.
        apps = ChannelAppStore(pool, master_key, ttl_s=0.0)
        desk = OrderDesk(
            pool,
            world.names,
            Channels(world.adapters, apps, world.channels.notify_url),
            HttpDepository(world.session, world.depository_url, BankAppStore(pool), env.app_id),
            Timing(channel_timeout_s=2.0),
        )
        requests = [
            order(f"SO-pool-{i}", [(world.a, 600), (world.b, 300)], 100)
            for i in range(4 * POOL_SIZE)
        ]
        async with asyncio.timeout(30):
            views = await asyncio.gather(*(desk.create(KEY, r) for r in requests))
    finally:
        await pool.close()
    assert {view.order["state"] for view, _ in views} == {"AWAITING_PAYMENT"}
    assert all(created for _, created in views)
