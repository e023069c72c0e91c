"""``fundhub up`` trusts the channel simulator: the dev keys it makes are the ones the simulator
reads from its ``--keys-dir`` and the ones registered as the active channel apps, so a payment
and a refund go through both channels' adapters, signed and verified both ways."""

from __future__ import annotations

import uuid

from support.env import ModuleEnv
from support.uvicorn_thread import ThreadedServer

from fundhub.channel_simulator.app import create_app
from fundhub.channel_simulator.notifier import Behaviour
from fundhub.channels.apps import active_app
from fundhub.channels.events import Channel
from fundhub.channels.payments import open_channel_payments
from fundhub.channels.ports import PaymentOrder
from fundhub.cli.devstack.channel_dev import (
    CHANNEL_SIM_DIR,
    DEV_ALIPAY_APP_ID,
    DEV_APPID,
    ensure_channel_dev_keys,
    register_channel_apps,
)


async def test_the_dev_stack_registers_the_simulator_it_starts(env: ModuleEnv) -> None:
    directory = env.tmp / "dev"
    keys = ensure_channel_dev_keys(directory)
    assert ensure_channel_dev_keys(directory) == keys  # kept across restarts
    assert env.settings.master_key is not None
    async with env.pool.acquire() as conn:
        await register_channel_apps(conn, env.settings.master_key, keys)
        await register_channel_apps(conn, env.settings.master_key, keys)  # again: no change
    wechat = await active_app(env.pool, Channel.WECHATPAY)
    ali = await active_app(env.pool, Channel.ALIPAY)
    assert wechat is not None and wechat.app_id == DEV_APPID
    assert ali is not None and ali.app_id == DEV_ALIPAY_APP_ID

    simulator = ThreadedServer(create_app(Behaviour(), keys_dir=directory / CHANNEL_SIM_DIR))
    try:
        settings = env.settings.model_copy(
            update={
                "wechatpay_base_url": simulator.url,
                "alipay_gateway_url": f"{simulator.url}/gateway.do",
            }
        )
        async with open_channel_payments(settings, env.pool, retries=0) as payments:
            for app in (wechat, ali):
                order = PaymentOrder(
                    app.channel, app.app_id, f"DEV-{uuid.uuid4().hex[:12]}", 100, "CNY", "dev",
                    "http://127.0.0.1:9/callbacks",
                )  # fmt: skip
                params = await payments.create_payment(order)
                assert params.params.get("code_url") or params.params.get("qr_code")
    finally:
        simulator.stop()
