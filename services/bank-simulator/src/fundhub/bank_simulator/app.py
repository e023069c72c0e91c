"""The simulator's control API: start scenarios, watch their progress, scrape metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import FastAPI, HTTPException, status

from fundhub.bank_simulator.config import SimulatorConfig
from fundhub.bank_simulator.daily_file_api import DailyFiles, daily_file_router
from fundhub.bank_simulator.depository_api import MemberNotifier, depository_router
from fundhub.bank_simulator.depository_members import DepositoryBehaviour, MemberBook
from fundhub.bank_simulator.depository_orders import DepositoryOrders, order_router
from fundhub.bank_simulator.depository_refund_debits import RefundDebitDesk, refund_debit_router
from fundhub.bank_simulator.depository_splits import SplitDesk, SplitNotifier, split_router
from fundhub.bank_simulator.metrics import PrometheusObserver
from fundhub.bank_simulator.notifications import private_key
from fundhub.bank_simulator.payout_api import payout_router
from fundhub.bank_simulator.payout_callbacks import PayoutNotifier
from fundhub.bank_simulator.payouts_bank import PayoutBank, PayoutBehaviour
from fundhub.bank_simulator.runs import RunRegistry, TransferScenarioRequest, plan_run
from fundhub.bank_simulator.sender import BankSender, open_sender
from fundhub.bank_simulator.stream import new_feed, run_stream
from fundhub.web.health import health_router

log = structlog.get_logger("fundhub.bank_simulator.app")


def create_app(
    config: SimulatorConfig,
    payouts: PayoutBehaviour | None = None,
    depository: DepositoryBehaviour | None = None,
) -> FastAPI:
    """The control API, the bank's payout side behaving as ``payouts`` says, and its
    depository's member side as ``depository`` says."""
    key = private_key(config.private_key_pem)  # fail at start, not at the first scenario
    runs = RunRegistry()
    senders: list[BankSender] = []
    bank = PayoutBank(payouts)
    notifier = PayoutNotifier(
        bank, config.app_id, key, **config.delivery(), observer=PrometheusObserver()
    )
    members = MemberBook(depository or DepositoryBehaviour())
    member_notifier = MemberNotifier(members, config.app_id, key, config.delivery())
    splits = SplitDesk()
    debits = RefundDebitDesk(splits)
    split_notifier = SplitNotifier(
        splits, config.app_id, key, **config.delivery(), observer=PrometheusObserver()
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with (
            open_sender(
                config.gateway_url, **config.delivery(), observer=PrometheusObserver()
            ) as sender,
            notifier.running(),
            member_notifier.running(),
            split_notifier.running(),
        ):
            senders.append(sender)
            stream: asyncio.Task[None] | None = None
            if config.stream_interval_s > 0:
                feed = new_feed(config.stream_accounts)
                stream = asyncio.create_task(
                    run_stream(feed, sender, config.app_id, key, config.stream_interval_s)
                )
            log.info(
                "bank_simulator_started",
                gateway=sender.url,
                app_id=config.app_id,
                stream_interval_s=config.stream_interval_s,
                payouts=bank.behaviour.to_json(),
                depository=members.behaviour.to_json(),
            )
            try:
                yield
            finally:
                if stream is not None:
                    stream.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await stream
                await runs.cancel_all()
                senders.clear()

    async def sender_ready() -> bool:
        return bool(senders)

    async def payouts_ready() -> bool:
        return notifier.is_running

    async def depository_ready() -> bool:
        return member_notifier.is_running and split_notifier.is_running

    app = FastAPI(
        title="fundhub bank simulator",
        summary="Plays the bank: signed bkfunds.acct.transfer.notify with its retries, "
        "the payout API with its delays, failures, timeouts and callbacks, and the "
        "depository's member API with its reviews, micro-deposits and signed results, its "
        "order registration, splits and refund debits.",
        lifespan=lifespan,
    )
    app.include_router(
        health_router(
            {"sender": sender_ready, "payouts": payouts_ready, "depository": depository_ready}
        )
    )
    app.include_router(payout_router(bank, notifier))
    app.include_router(depository_router(members, member_notifier))
    app.include_router(order_router(DepositoryOrders(), config.app_id, key))
    app.include_router(split_router(splits, split_notifier))
    app.include_router(refund_debit_router(debits))
    app.include_router(daily_file_router(DailyFiles(config.app_id, runs, bank, splits, debits)))

    def current_sender() -> BankSender:
        if not senders:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "simulator not started")
        return senders[0]

    @app.post("/scenarios/transfers", status_code=status.HTTP_202_ACCEPTED)
    async def start_transfers(body: TransferScenarioRequest) -> dict[str, Any]:
        """Plan the notices now, then sign and send them in the background."""
        sender = current_sender()
        run = await asyncio.to_thread(plan_run, body)
        runs.start(run, sender, config.app_id, key)
        log.info("scenario_started", scenario_id=run.id, planned=run.planned, seed=run.seed)
        return run.to_json()

    @app.get("/scenarios/{scenario_id}")
    async def scenario(scenario_id: str) -> dict[str, Any]:
        run = runs.get(scenario_id)
        if run is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no scenario {scenario_id}")
        return run.to_json()

    @app.get("/scenarios")
    async def scenarios() -> list[dict[str, Any]]:
        """The recent scenarios, newest first."""
        return [run.to_json() for run in runs.recent()]

    return app
