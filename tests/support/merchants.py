"""Merchants as the merchants context would have registered them: written directly (their rows
and their ledger accounts), for the orders tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg


@dataclass(frozen=True)
class Merchant:
    merchant_id: str
    account_id: str


async def add_merchant(
    pool: asyncpg.Pool, owner_key_id: str, state: str = "ACTIVE", currency: str = "CNY"
) -> Merchant:
    """A merchant of ``owner_key_id`` in ``state``, with its ledger account and balance row."""
    suffix = uuid.uuid4().hex[:16]
    merchant = Merchant(f"mch_{suffix}", f"M{suffix}")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO accounts (account_id, kind, currency, name) VALUES ($1, 'customer', $2, $3)",
            merchant.account_id,
            currency,
            f"merchant {merchant.merchant_id}",
        )
        await conn.execute(
            "INSERT INTO account_balances (account_id, currency) VALUES ($1, $2)",
            merchant.account_id,
            currency,
        )
        await conn.execute(
            "INSERT INTO merchants (merchant_id, owner_key_id, merchant_no, state, account_id,"
            " currency) VALUES ($1, $2, $3, $4, $5, $6)",
            merchant.merchant_id,
            owner_key_id,
            f"no-{suffix}",
            state,
            merchant.account_id,
            currency,
        )
    return merchant


async def set_state(pool: asyncpg.Pool, merchant: Merchant, state: str) -> None:
    await pool.execute(
        "UPDATE merchants SET state = $2 WHERE merchant_id = $1", merchant.merchant_id, state
    )
