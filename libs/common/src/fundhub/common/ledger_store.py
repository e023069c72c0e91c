"""The ledger in Postgres: accounts, locked balances and journal writes, inside a caller's tx.

The rules (what balances, what may go negative) live in ``ledger.py``; this module only stores
what those rules decided.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg

from fundhub.common.db import BatchInsert
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


_ENTRY_COLUMNS = (
    ("entry_id", "uuid"),
    ("kind", "text"),
    ("ref_type", "text"),
    ("ref_id", "text"),
    ("description", "text"),
    ("correlation_id", "text"),
)
_POSTING_COLUMNS = (
    ("entry_id", "uuid"),
    ("account_id", "text"),
    ("bucket", "text"),
    ("currency", "text"),
    ("amount", "bigint"),
)
_INSERT_ENTRIES = BatchInsert("journal_entries", _ENTRY_COLUMNS)
_INSERT_POSTINGS = BatchInsert("postings", _POSTING_COLUMNS)


async def write_entries(
    conn: asyncpg.Connection, entries: Sequence[JournalEntry], correlation_ids: Sequence[str | None]
) -> None:
    await _INSERT_ENTRIES.run(
        conn,
        [
            (e.entry_id, e.kind, e.ref_type, e.ref_id, e.description, cid)
            for e, cid in zip(entries, correlation_ids, strict=True)
        ],
    )
    await _INSERT_POSTINGS.run(
        conn,
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
    await conn.execute(
        "UPDATE account_balances b SET available = u.a, frozen = u.f, pending = u.p, "
        "version = b.version + 1, updated_at = now() "
        "FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) AS u(id, a, f, p) "
        "WHERE b.account_id = u.id",
        *([r[i] for r in rows] for i in range(4)),
    )
