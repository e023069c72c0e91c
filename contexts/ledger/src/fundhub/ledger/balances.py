"""Reading balances and movements: the one read the API and the operator's CLI both use.

The ledger tables are the read model (no copy to drift). A customer account's buckets are its
``account_balances`` row, written with its postings; a system account keeps no such row (no hot
row for every consumer to queue on), so its buckets are summed from its postings.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fundhub.common.clock import iso_utc_ms
from fundhub.common.db import Connection, Row
from fundhub.ledger.rules import Bucket

MOVEMENT_COLUMNS = (
    "p.posting_id, p.entry_id, p.bucket, p.currency, p.amount, p.created_at, "
    "j.kind, j.ref_type, j.ref_id, j.description"
)
_BALANCE = """
    SELECT a.account_id, a.kind, a.currency, a.name,
           b.available, b.frozen, b.pending, b.updated_at, clock_timestamp() AS as_of
      FROM accounts a
      LEFT JOIN account_balances b USING (account_id)
"""


@dataclass(frozen=True)
class AccountBalance:
    account_id: str
    kind: str  # customer | system
    currency: str
    name: str | None
    available: int
    frozen: int
    pending: int
    updated_at: datetime | None
    as_of: datetime  # the database's clock when it was read
    derived: bool  # summed from postings (system accounts keep no balance row)

    @property
    def total(self) -> int:
        return self.available + self.frozen + self.pending


@dataclass(frozen=True)
class Statement:
    """A balance and its latest movements, read from one snapshot so that they agree."""

    balance: AccountBalance
    movements: list[dict[str, Any]] = field(default_factory=list)


_MAX_ID = 2**63 - 1  # posting ids are bigints: a larger cursor was never issued


class BadCursor(ValueError):
    pass


async def _from_row(conn: Connection, row: Row) -> AccountBalance:
    buckets = {bucket.value: row[bucket.value] for bucket in Bucket}
    derived = row["available"] is None
    if derived:
        sums = await conn.fetch(
            "SELECT bucket, sum(amount)::bigint AS total FROM postings"
            " WHERE account_id = $1 GROUP BY bucket",
            row["account_id"],
        )
        buckets = {bucket.value: 0 for bucket in Bucket} | {r["bucket"]: r["total"] for r in sums}
    return AccountBalance(
        account_id=row["account_id"],
        kind=row["kind"],
        currency=row["currency"].strip(),
        name=row["name"],
        available=buckets[Bucket.AVAILABLE],
        frozen=buckets[Bucket.FROZEN],
        pending=buckets[Bucket.PENDING],
        updated_at=row["updated_at"],
        as_of=row["as_of"],
        derived=derived,
    )


async def read_balance(conn: Connection, account_id: str) -> AccountBalance | None:
    row = await conn.fetchrow(_BALANCE + " WHERE a.account_id = $1", account_id)
    return None if row is None else await _from_row(conn, row)


async def customer_balances(conn: Connection) -> list[AccountBalance]:
    rows = await conn.fetch(_BALANCE + " WHERE a.kind = 'customer' ORDER BY a.account_id")
    return [await _from_row(conn, row) for row in rows]


async def statement(conn: Connection, account_id: str, recent: int) -> Statement | None:
    """The balance and its ``recent`` latest movements, from one snapshot."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        balance = await read_balance(conn, account_id)
        if balance is None:
            return None
        rows = await conn.fetch(
            f"SELECT {MOVEMENT_COLUMNS} FROM postings p JOIN journal_entries j USING (entry_id) "
            "WHERE p.account_id = $1 ORDER BY p.posting_id DESC LIMIT $2",
            account_id,
            recent,
        )
    return Statement(balance, [movement(r) for r in rows])


def encode_cursor(posting_id: int) -> str:
    return base64.urlsafe_b64encode(f"p:{posting_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, value = text.split(":", 1)
        if prefix != "p" or not (value.isascii() and value.isdigit()) or int(value) > _MAX_ID:
            raise ValueError(text)
        return int(value)
    except ValueError as exc:
        raise BadCursor("cursor is not one this API issued") from exc


def movement(row: Row) -> dict[str, Any]:
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


async def account_exists(conn: Connection, account_id: str) -> bool:
    return bool(await conn.fetchval("SELECT true FROM accounts WHERE account_id = $1", account_id))


async def transactions(
    conn: Connection, account_id: str, before: int | None, limit: int
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
