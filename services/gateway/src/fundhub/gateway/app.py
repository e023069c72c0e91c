"""The gateway application: wiring only; each capability lives in its own router module."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError

from fundhub.common import db
from fundhub.common.config import Settings
from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.common.health import health_router
from fundhub.common.kafka import KafkaPublisher, ensure_topics
from fundhub.common.topics import topics
from fundhub.gateway.accounts import accounts_router
from fundhub.gateway.auth import Authenticator
from fundhub.gateway.bank_callbacks import BankNotificationIntake, install_bank_callback
from fundhub.gateway.middleware import CorrelationMiddleware
from fundhub.gateway.payout_store import PayoutStore
from fundhub.gateway.payouts import payouts_router
from fundhub.gateway.responses import failure, refusal_response
from fundhub.gateway.stores import ApiKeyStore, BankAppStore

log = structlog.get_logger(__name__)

NONCE_PURGE_INTERVAL_S = 60.0


def create_app(settings: Settings) -> FastAPI:
    if not settings.master_key:
        raise RuntimeError("FUNDHUB_MASTER_KEY is required: it unseals the API secrets")
    master_key = settings.master_key

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await db.connect_pool(settings.database_url, max_size=settings.db_pool_max)
        await ensure_topics(settings)
        publisher = KafkaPublisher(settings)
        await publisher.start()
        app.state.pool = pool
        app.state.publisher = publisher
        app.state.authenticator = Authenticator(
            pool, ApiKeyStore(pool, master_key), settings.api_timestamp_tolerance_s
        )
        app.state.bank_intake = BankNotificationIntake(
            settings, topics(settings), BankAppStore(pool), publisher
        )
        app.state.payouts = PayoutStore(
            pool,
            topics(settings),
            settings.payout_result_deadline_s,
            settings.payout_poll_base_s,
        )
        purge = asyncio.create_task(_purge_nonces(app.state.authenticator))
        log.info("gateway_started", port=settings.gateway_port)
        try:
            yield
        finally:
            purge.cancel()
            await publisher.stop()
            await pool.close()

    app = FastAPI(
        title="fundhub gateway",
        version="0.1.0",
        summary="Signed API for balances and payouts, and the bank's signed notifications",
        lifespan=lifespan,
    )

    async def kafka_ready() -> bool:
        publisher: KafkaPublisher = app.state.publisher
        return await publisher.ready()

    async def postgres_ready() -> bool:
        return await db.ping(app.state.pool)

    app.include_router(health_router({"kafka": kafka_ready, "postgres": postgres_ready}))
    install_bank_callback(app)
    app.include_router(accounts_router())
    app.include_router(payouts_router())
    _install_handlers(app)
    return app


async def _purge_nonces(auth: Authenticator) -> None:
    while True:
        await asyncio.sleep(NONCE_PURGE_INTERVAL_S)
        try:
            await auth.purge_nonces()
        except Exception as exc:
            log.warning("nonce_purge_failed", error=str(exc))


def _install_handlers(app: FastAPI) -> None:
    app.add_middleware(CorrelationMiddleware)

    @app.exception_handler(FundhubError)
    async def on_refusal(request: Request, exc: FundhubError) -> Response:
        return refusal_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        field = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        message = f"{field}: {first.get('msg', 'invalid')}" if field else "invalid request"
        log.warning("request_invalid", reason=message)
        return failure(ErrorCode.INVALID_PARAMETER, message)

    @app.exception_handler(Exception)
    async def on_crash(request: Request, exc: Exception) -> Response:
        return refusal_response(request, exc)
