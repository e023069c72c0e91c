"""The gateway application: composition only; each route lives in its own router module and
every request reaches them through the one pipeline (``edge.Edge``)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError

from fundhub.access.environment_stamp import claim_environment
from fundhub.access.keys import SANDBOX, environment_served_by
from fundhub.access.store import ApiKeyStore
from fundhub.bank_client.session import bank_session
from fundhub.bank_transfers.bank_apps import BankAppStore
from fundhub.channels.apps import ChannelAppStore
from fundhub.channels.payments import open_channel_payments
from fundhub.common import db
from fundhub.common.config import Settings
from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.common.kafka import KafkaPublisher, ensure_topics
from fundhub.common.migrations import verify
from fundhub.common.topics import topics
from fundhub.gateway.accounts import accounts_router
from fundhub.gateway.audit_api import audit_router
from fundhub.gateway.auth import Authenticator
from fundhub.gateway.bank_callbacks import BankNotificationIntake, bank_router
from fundhub.gateway.channel_callbacks import ChannelNotificationIntake, channel_router
from fundhub.gateway.merchants import merchants_router
from fundhub.gateway.orders import orders_router
from fundhub.gateway.payouts import payouts_router
from fundhub.gateway.rate_limits import RateLimiter
from fundhub.gateway.reconciliation import reconciliation_router
from fundhub.gateway.sandbox import sandbox_router
from fundhub.gateway.schemas import finish_document
from fundhub.gateway.settlement import settlement_router
from fundhub.merchants.admission import MerchantAdmission
from fundhub.orders import unsettled
from fundhub.orders.admission import OrderDesk, Timing
from fundhub.orders.channel_choice import from_channels
from fundhub.orders.depository_http import HttpDepository
from fundhub.payouts.admission import PayoutStore
from fundhub.settlement.confirm import Confirmations
from fundhub.web.health import health_router
from fundhub.webhooks.destinations import CallbackAddresses

log = structlog.get_logger(__name__)

NONCE_PURGE_INTERVAL_S = 60.0


def create_app(settings: Settings) -> FastAPI:
    if not settings.master_key:
        raise RuntimeError("FUNDHUB_MASTER_KEY is required: it unseals the API secrets")
    limiter = RateLimiter(settings) if settings.rate_limits_enabled else None
    served = environment_served_by(settings.env)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await verify(settings.database_url)
        pool = await db.connect_pool(settings.database_url, max_size=settings.db_pool_max)
        await claim_environment(pool, served, "gateway")  # the other environment's DB: stop
        await ensure_topics(settings)
        publisher = KafkaPublisher(settings)
        await publisher.start()
        names = topics(settings)
        app.state.pool = pool
        app.state.publisher = publisher
        keys = ApiKeyStore(
            pool,
            settings.master_keys(),
            served,
            dsn=settings.database_url,
        )
        keys.start()
        app.state.authenticator = Authenticator(pool, keys, settings.api_timestamp_tolerance_s)
        app.state.bank_intake = BankNotificationIntake(
            settings, names, BankAppStore(pool), publisher
        )
        channel_apps = ChannelAppStore(pool, settings.master_keys())
        app.state.channel_intake = ChannelNotificationIntake(names, channel_apps, publisher)
        app.state.confirmations = Confirmations(pool, settings.bank_app_id)
        app.state.payouts = PayoutStore(
            pool, names, settings.payout_result_deadline_s, settings.payout_poll_base_s
        )
        # A merchant with unsettled orders does not close (orders.unsettled.count).
        app.state.merchants = MerchantAdmission(
            pool, names, settings.merchant_poll_base_s, unsettled_orders=[unsettled]
        )
        # Orders are created while the platform waits: this process calls the depository and
        # the channels' payment APIs (the merchants' signing keys opened here, not only the
        # channels' public ones).
        closing = contextlib.AsyncExitStack()
        session = bank_session(settings)
        closing.push_async_callback(session.close)
        channel_payments = await closing.enter_async_context(open_channel_payments(settings, pool))
        app.state.orders = OrderDesk(
            pool,
            names,
            from_channels(settings, channel_payments, channel_apps),
            HttpDepository(
                session,
                settings.bank_base_url,
                BankAppStore(pool),
                settings.bank_app_id,
                settings.depository_timeout_s,
            ),
            Timing(
                settings.channel_timeout_s,
                settings.refund_poll_base_s,
                settings.refund_result_deadline_s,
            ),
        )
        if limiter is not None:
            await limiter.start(pool)
        purge = asyncio.create_task(_purge_nonces(app.state.authenticator))
        log.info("gateway_started", port=settings.gateway_port)
        try:
            yield
        finally:
            purge.cancel()
            await keys.stop()
            if limiter is not None:
                await limiter.stop()
            await publisher.stop()
            await closing.aclose()
            await db.close_pool(pool)

    app = FastAPI(
        title="fundhub gateway",
        version="0.1.0",
        summary="Signed API for balances, payouts, sub-merchants and orders, and the bank's and "
        "the channels' signed notifications",
        lifespan=lifespan,
        # A path with a trailing slash is not found, never redirected: Starlette would build
        # the Location from the request's Host header, a redirect the caller chose.
        redirect_slashes=False,
        # The interactive documents are on the operations port (``operations``), not here.
        docs_url=None,
        redoc_url=None,
    )
    app.state.rate_limiter = limiter  # its guard and observer join the pipeline (main.py)

    async def kafka_ready() -> bool:
        publisher: KafkaPublisher = app.state.publisher
        return await publisher.ready()

    async def postgres_ready() -> bool:
        return await db.ping(app.state.pool)

    # Scenario controls exist on a sandbox gateway only: a live one answers them as unknown.
    sandbox = (sandbox_router(),) if served == SANDBOX else ()
    for router in (
        *sandbox,
        health_router({"kafka": kafka_ready, "postgres": postgres_ready}, metrics=False),
        bank_router(),
        channel_router(),
        accounts_router(),
        payouts_router(CallbackAddresses(settings.callback_allow_cidrs)),
        settlement_router(),
        merchants_router(CallbackAddresses(settings.callback_allow_cidrs)),
        orders_router(CallbackAddresses(settings.callback_allow_cidrs)),
        audit_router(),
        reconciliation_router(settings),
    ):
        # The routes themselves, not an included router: the pipeline (edge.Edge) reads each
        # route's spec, and FastAPI's included routers hide their routes behind lazy wrappers.
        app.router.routes.extend(router.routes)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> None:
        """FastAPI's own checks of path and query values: E001, answered by the pipeline."""
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        message = f"{field}: {first.get('msg', 'invalid')}" if field else "invalid request"
        raise FundhubError(ErrorCode.INVALID_PARAMETER, message)

    generate_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI's document, told the truth: no 422, the operations routes' answers."""
        return finish_document(generate_openapi())

    app.openapi = openapi  # type: ignore[method-assign]
    return app


async def _purge_nonces(auth: Authenticator) -> None:
    while True:
        await asyncio.sleep(NONCE_PURGE_INTERVAL_S)
        try:
            await auth.purge_nonces()
        except Exception as exc:
            log.warning("nonce_purge_failed", error=str(exc))
