"""The orders and merchants settlement stands on, written straight into a test database.

Merchants are written as the merchants context writes an approved one with a verified
settlement account; orders as the orders context writes a paid one. The helpers post money the way those contexts
do (a paid order: the channel's clearing -> each part's pending; a refund before settlement:
pending -> frozen), through the ledger's own rules and store, so every invariant holds.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from fundhub.common import db
from fundhub.common.clock import utcnow
from fundhub.ledger import store as ledger_store
from fundhub.ledger.rules import (
    Bucket,
    JournalEntry,
    apply_entry,
    move,
    new_entry_id,
    system_account,
)

CLEARING = system_account("wechatpay-clearing", "CNY")
INFLOW = system_account("bank-inflow", "CNY")
PLATFORM_FEE_ACCOUNT = "platform-fee-CNY"


def _short() -> str:
    return uuid.uuid4().hex[:16]


@dataclass(frozen=True)
class Merchant:
    merchant_id: str
    account_id: str
    name: str


async def merchant(
    pool: asyncpg.Pool,
    key_id: str,
    name: str,
    *,
    state: str = "ACTIVE",
    verified: bool = True,
    notify_url: str | None = None,
    account_no: str = "6222000011112222",
) -> Merchant:
    """An ACTIVE merchant with its ledger account and, unless ``verified`` is False, a
    verified settlement account."""
    tail = _short()
    merchant_id, account_id = f"mch_{tail}", f"mac_{tail}"
    async with pool.acquire() as conn, conn.transaction():
        await ledger_store.ensure_accounts(conn, [(account_id, "CNY", name)], [])
        await conn.execute(
            "INSERT INTO merchants (merchant_id, owner_key_id, merchant_no, state, account_id,"
            " notify_url, approved_version) VALUES ($1, $2, $3, $4, $5, $6, 1)",
            merchant_id,
            key_id,
            f"M-{tail}",
            state,
            account_id,
            notify_url,
        )
        await conn.execute(
            "INSERT INTO merchant_versions (merchant_id, version, state, materials, fingerprint)"
            " VALUES ($1, 1, 'APPROVED', $2::jsonb, 'f')",
            merchant_id,
            {"name": name, "type": "ENTERPRISE"},
        )
        if verified:
            binding = f"msa_{tail}"
            await conn.execute(
                "INSERT INTO merchant_settlement_accounts (binding_id, merchant_id, account_no,"
                " account_name, bank_name, fingerprint, state, verified_at)"
                " VALUES ($1, $2, $3, $4, 'Ping An Bank', 'f', 'VERIFIED', now())",
                binding,
                merchant_id,
                account_no,
                name,
            )
            await conn.execute(
                "UPDATE merchants SET settlement_binding = $2 WHERE merchant_id = $1",
                merchant_id,
                binding,
            )
    return Merchant(merchant_id, account_id, name)


async def _post(conn: asyncpg.Connection, entry: JournalEntry, accounts: Sequence[str]) -> None:
    await ledger_store.ensure_accounts(
        conn, [(a, "CNY", None) for a in accounts], [CLEARING, INFLOW]
    )
    locked = await ledger_store.lock_balances(conn, accounts)
    updated = apply_entry(locked, entry)
    await db.write_together(
        conn,
        [
            *ledger_store.entry_writes([entry], [None]),
            *ledger_store.balance_writes(updated.values()),
        ],
    )


@dataclass(frozen=True)
class PaidOrder:
    order_id: str
    order_no: str
    parts: tuple[tuple[str | None, str, int], ...]  # (merchant_id, account_id, amount)


async def paid_order(
    pool: asyncpg.Pool,
    key_id: str,
    receivers: Sequence[tuple[Merchant, int]],
    platform_fee: int = 0,
    *,
    paid_at: datetime | None = None,
    notify_url: str | None = None,
    order_no: str | None = None,
) -> PaidOrder:
    """A PAID order: its row, its parts (receivers, then the fee), and the payment posted as
    orders posts it (the channel's clearing -> each part's pending)."""
    order_id = f"ORD{_short()}"
    order_no = order_no or f"order-{_short()}"
    parts: list[tuple[str | None, str, int]] = [
        (m.merchant_id, m.account_id, n) for m, n in receivers
    ]
    if platform_fee:
        parts.append((None, PLATFORM_FEE_ACCOUNT, platform_fee))
    amount = sum(n for _, _, n in parts)
    postings = [
        p
        for _, account, n in parts
        for p in move(CLEARING, Bucket.AVAILABLE, account, Bucket.PENDING, "CNY", n)
    ]
    entry = JournalEntry(new_entry_id(), "order", "order", order_id, tuple(postings))
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO orders (order_id, key_id, order_no, fingerprint, amount, currency,"
            " channel, app_id, description, platform_fee, notify_url, state, transaction_id,"
            " paid_at) VALUES ($1, $2, $3, 'f', $4, 'CNY', 'WECHATPAY', 'wx-app', 'goods', $5,"
            " $6, 'PAID', $7, $8)",
            order_id,
            key_id,
            order_no,
            amount,
            platform_fee,
            notify_url,
            f"T{_short()}",
            paid_at or utcnow(),
        )
        await conn.executemany(
            "INSERT INTO order_parts (order_id, position, merchant_id, account_id, amount)"
            " VALUES ($1, $2, $3, $4, $5)",
            [(order_id, i, m, a, n) for i, (m, a, n) in enumerate(parts)],
        )
        await _post(conn, entry, [a for _, a, _ in parts])
    return PaidOrder(order_id, order_no, tuple(parts))


async def refund_before_settlement(
    pool: asyncpg.Pool, order: PaidOrder, allocation: Sequence[int], *, state: str = "SUCCESS"
) -> str:
    """A refund held from the parts' pending (and, when SUCCESS, gone to the channel), as
    orders does it before the order settles."""
    refund_id = f"RFD{_short()}"
    postings = [
        p
        for (_, account, _), n in zip(order.parts, allocation, strict=True)
        for p in move(account, Bucket.PENDING, account, Bucket.FROZEN, "CNY", n)
    ]
    if state == "SUCCESS":
        postings += [
            p
            for (_, account, _), n in zip(order.parts, allocation, strict=True)
            for p in move(account, Bucket.FROZEN, CLEARING, Bucket.AVAILABLE, "CNY", n)
        ]
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO order_refunds (refund_id, order_id, refund_no, fingerprint, amount,"
            " allocation, state, held, source_bucket) VALUES ($1, $2, $3, 'f', $4, $5, $6,"
            " true, 'pending')",
            refund_id,
            order.order_id,
            f"refund-{_short()}",
            sum(allocation),
            list(allocation),
            state,
        )
        if postings:
            entry = JournalEntry(
                new_entry_id(), "order", "order-refund", refund_id, tuple(postings)
            )
            await _post(conn, entry, [a for _, a, _ in order.parts])
    return refund_id


async def pending_refund(pool: asyncpg.Pool, order: PaidOrder, amount: int) -> str:
    """A refund admitted and not held yet: it has not chosen its bucket."""
    refund_id = f"RFD{_short()}"
    await pool.execute(
        "INSERT INTO order_refunds (refund_id, order_id, refund_no, fingerprint, amount,"
        " allocation) VALUES ($1, $2, $3, 'f', $4, $5)",
        refund_id,
        order.order_id,
        f"refund-{_short()}",
        amount,
        [amount] + [0] * (len(order.parts) - 1),
    )
    return refund_id


async def credit_available(pool: asyncpg.Pool, account_id: str, amount: int) -> None:
    """Money in an account's available, as a settlement leaves it (from the bank's inflow)."""
    postings = move(INFLOW, Bucket.AVAILABLE, account_id, Bucket.AVAILABLE, "CNY", amount)
    entry = JournalEntry(new_entry_id(), "test", "test", account_id, postings)
    async with pool.acquire() as conn, conn.transaction():
        await _post(conn, entry, [account_id])


async def buckets(pool: asyncpg.Pool, account_id: str) -> tuple[int, int, int]:
    """(available, frozen, pending) of one account."""
    row = await pool.fetchrow(
        "SELECT available, frozen, pending FROM account_balances WHERE account_id = $1",
        account_id,
    )
    return (0, 0, 0) if row is None else (row["available"], row["frozen"], row["pending"])
