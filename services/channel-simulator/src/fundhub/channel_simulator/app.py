"""The channel simulator's application: both channels' APIs, the control API, the notifier,
health and metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import structlog
from fastapi import FastAPI

from fundhub.channel_simulator.alipay_api import alipay_router
from fundhub.channel_simulator.control_api import control_router
from fundhub.channel_simulator.keys import MERCHANTS_FILE, Merchants, OwnKeys, own_keys
from fundhub.channel_simulator.notifier import Behaviour, Notifier
from fundhub.channel_simulator.simulation import Simulation
from fundhub.channel_simulator.wechatpay_api import wechatpay_router
from fundhub.web.health import health_router

log = structlog.get_logger("fundhub.channel_simulator.app")


def create_app(
    behaviour: Behaviour | None = None,
    keys_dir: Path | None = None,
    keys: OwnKeys | None = None,
) -> FastAPI:
    """``keys_dir``: the simulator's own keys and ``merchants.json`` (what is missing is made
    at start); ``keys``: its own keys given directly (tests)."""
    merchants = Merchants()
    if keys_dir is not None and (keys_dir / MERCHANTS_FILE).is_file():
        merchants.load(keys_dir / MERCHANTS_FILE)
    notifier = Notifier(behaviour or Behaviour())
    simulation = Simulation(keys or own_keys(keys_dir), merchants, notifier)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with notifier.running():
            log.info(
                "channel_simulator_started",
                platform_serial=simulation.keys.platform_serial,
                wechatpay_merchants=sorted(merchants.wechatpay),
                alipay_apps=sorted(merchants.alipay),
                behaviour=notifier.behaviour.to_json(),
            )
            yield

    async def notifier_ready() -> bool:
        return notifier.is_running

    app = FastAPI(
        title="fundhub channel simulator",
        summary="Plays WeChat Pay (APIv3) and Alipay: payments, refunds, signed notifications "
        "with the channels' retries, duplicates and delays.",
        lifespan=lifespan,
    )
    app.state.simulation = simulation
    app.include_router(health_router({"notifier": notifier_ready}))
    app.include_router(wechatpay_router(simulation))
    app.include_router(alipay_router(simulation))
    app.include_router(control_router(simulation))
    return app
