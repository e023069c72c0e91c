"""Queries behind the read API; the ledger tables are the read model (no copy to drift)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import asyncpg

from fundhub.common.clock import iso_utc_ms

MOVEMENT_COLUMNS = (
    "p.posting_id, p.entry_id, p.bucket, p.currency, p.amount, p.created_at, "
    "j.kind, j.ref_type, j.ref_id, j.description"
)


class BadCursor(ValueError):
    pass


def encode_cursor(posting_id: int) -> str:
    return base64.urlsafe_b64encode(f"p:{posting_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, value = text.split(":", 1)
        if prefix != "p" or not value.isdigit():
            raise ValueError(text)
        return int(value)
    except ValueError as exc:
        raise BadCursor("cursor is not one this API issued") from exc


def movement(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "movementId": row["posting_id"],
        "entryId": str(row["entry_id"]),
        "kind": row["kind"],
        "bucket": row["bucket"],
        "amount": row["amount"],
        "currency": row["currency"],
        "refType": row["ref_type"],
        "refId": row["ref_id"],
        "description": row["description"] or "",
        "at": iso_utc_ms(row["created_at"]),
    }


@dataclass(frozen=True)
class BalanceView:
    account_id: str
    currency: str
    available: int
    frozen: int
    pending: int
    as_of: str
    movements: list[dict[str, Any]]

    def to_wire(self) -> dict[str, Any]:
        return {
            "accountId": self.account_id,
            "currency": self.currency,
            "available": self.available,
            "frozen": self.frozen,
            "pending": self.pending,
            "total": self.available + self.frozen + self.pending,
            "asOf": self.as_of,
            "movements": self.movements,
        }


async def balance(conn: asyncpg.Connection, account_id: str, recent: int) -> BalanceView | None:
    """Balance and its latest movements from one snapshot, so they agree with each other."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        row = await conn.fetchrow(
            "SELECT currency, available, frozen, pending, clock_timestamp() AS as_of "
            "FROM account_balances WHERE account_id = $1",
            account_id,
        )
        if row is None:
            return None
        rows = await conn.fetch(
            f"SELECT {MOVEMENT_COLUMNS} FROM postings p JOIN journal_entries j USING (entry_id) "
            "WHERE p.account_id = $1 ORDER BY p.posting_id DESC LIMIT $2",
            account_id,
            recent,
        )
    return BalanceView(
        account_id=account_id,
        currency=row["currency"].strip(),
        available=row["available"],
        frozen=row["frozen"],
        pending=row["pending"],
        as_of=iso_utc_ms(row["as_of"]),
        movements=[movement(r) for r in rows],
    )


async def account_exists(conn: asyncpg.Connection, account_id: str) -> bool:
    return bool(await conn.fetchval("SELECT true FROM accounts WHERE account_id = $1", account_id))


async def transactions(
    conn: asyncpg.Connection, account_id: str, before: int | None, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first; the cursor is the last posting seen, so pages never skip or repeat."""
    rows = await conn.fetch(
        f"SELECT {MOVEMENT_COLUMNS} FROM postings p JOIN journal_entries j USING (entry_id) "
        "WHERE p.account_id = $1 AND ($2::bigint IS NULL OR p.posting_id < $2) "
        "ORDER BY p.posting_id DESC LIMIT $3",
        account_id,
        before,
        limit + 1,
    )
    page = rows[:limit]
    cursor = encode_cursor(page[-1]["posting_id"]) if len(rows) > limit else None
    return [movement(r) for r in page], cursor
