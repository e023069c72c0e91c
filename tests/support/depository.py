"""The bank simulator's depository (its order registration router) served on a thread of its
own, and the bank app whose keys verify its answers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
from fastapi import FastAPI

from fundhub.bank_simulator.depository_orders import DepositoryOrders, order_router
from fundhub.bank_transfers.bank_apps import normalize_public_key, upsert_bank_app
from fundhub.common.signing import load_private_key
from support.env import ModuleEnv
from support.uvicorn_thread import ThreadedServer


@contextmanager
def depository_serving(
    env: ModuleEnv, private_pem: str | None = None
) -> Iterator[tuple[DepositoryOrders, str]]:
    """What the depository holds, and its base URL; it signs with ``private_pem`` (default:
    the module's bank key, which ``trust_bank`` registers)."""
    held = DepositoryOrders()
    app = FastAPI()
    key = load_private_key(private_pem or env.bank.private_pem)
    app.include_router(order_router(held, env.app_id, key))
    server = ThreadedServer(app)
    try:
        yield held, server.url
    finally:
        server.stop()


async def trust_bank(pool: asyncpg.Pool, env: ModuleEnv) -> None:
    """Register the module's bank key for its app id, as ``fundhub bank-app add`` does."""
    async with pool.acquire() as conn:
        await upsert_bank_app(conn, env.app_id, normalize_public_key(env.bank.public_pem), ["sign"])
