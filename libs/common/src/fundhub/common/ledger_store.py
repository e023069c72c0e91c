"""The ledger in Postgres: accounts, locked balances and journal writes, inside a caller's tx.

The rules (what balances, what may go negative) live in ``ledger.py``; this module only stores
what those rules decided.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg

from fundhub.common.ledger import Balance, JournalEntry


async def ensure_customer_accounts(
    conn: asyncpg.Connection, accounts: Iterable[tuple[str, str, str | None]]
) -> None:
    """Create (account_id, currency, name) on first sight; existing accounts are left alone."""
    rows = sorted(set(accounts))
    if not rows:
        return
    await conn.execute(
        "INSERT INTO accounts (account_id, kind, currency, name) "
        "SELECT a, 'customer', c, n FROM unnest($1::text[], $2::text[], $3::text[]) AS t(a, c, n) "
        "ON CONFLICT (account_id) DO NOTHING",
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
    )
    await conn.execute(
        "INSERT INTO account_balances (account_id, currency) "
        "SELECT a, c FROM unnest($1::text[], $2::text[]) AS t(a, c) "
        "ON CONFLICT (account_id) DO NOTHING",
        [r[0] for r in rows],
        [r[1] for r in rows],
    )


async def ensure_system_accounts(conn: asyncpg.Connection, account_ids: Iterable[str]) -> None:
    """System accounts (``sys:<purpose>:<currency>``) may go negative; no balance row is kept."""
    ids = sorted(set(account_ids))
    if not ids:
        return
    await conn.execute(
        "INSERT INTO accounts (account_id, kind, currency, allow_negative) "
        "SELECT a, 'system', split_part(a, ':', 3), true FROM unnest($1::text[]) AS t(a) "
        "ON CONFLICT (account_id) DO NOTHING",
        ids,
    )


async def lock_balances(conn: asyncpg.Connection, account_ids: Iterable[str]) -> dict[str, Balance]:
    """Lock in a fixed order so that concurrent batches cannot deadlock."""
    rows = await conn.fetch(
        "SELECT account_id, currency, available, frozen, pending, allow_negative "
        "FROM account_balances WHERE account_id = ANY($1::text[]) ORDER BY account_id FOR UPDATE",
        sorted(set(account_ids)),
    )
    return {
        r["account_id"]: Balance(
            account_id=r["account_id"],
            currency=r["currency"].strip(),
            available=r["available"],
            frozen=r["frozen"],
            pending=r["pending"],
            allow_negative=r["allow_negative"],
        )
        for r in rows
    }


async def write_entries(
    conn: asyncpg.Connection, entries: Sequence[JournalEntry], correlation_ids: Sequence[str | None]
) -> None:
    if not entries:
        return
    await conn.executemany(
        "INSERT INTO journal_entries"
        " (entry_id, kind, ref_type, ref_id, description, correlation_id)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        [
            (e.entry_id, e.kind, e.ref_type, e.ref_id, e.description, cid)
            for e, cid in zip(entries, correlation_ids, strict=True)
        ],
    )
    await conn.executemany(
        "INSERT INTO postings (entry_id, account_id, bucket, currency, amount)"
        " VALUES ($1, $2, $3, $4, $5)",
        [
            (e.entry_id, p.account_id, p.bucket.value, p.currency, p.amount)
            for e in entries
            for p in e.postings
        ],
    )


async def save_balances(conn: asyncpg.Connection, balances: Iterable[Balance]) -> None:
    rows = [(b.account_id, b.available, b.frozen, b.pending) for b in balances]
    if not rows:
        return
    await conn.executemany(
        "UPDATE account_balances SET available = $2, frozen = $3, pending = $4, "
        "version = version + 1, updated_at = now() WHERE account_id = $1",
        rows,
    )
