"""The initialisation's own SQL, in the caller's transaction: one import per owner at a time, and
the opening balances booked (``init_opening_balances``, migration 0022)."""

from __future__ import annotations

from collections.abc import Sequence

from fundhub.common.db import BatchInsert, Connection, Write
from fundhub.reconciliation.initialisation.plan import Opening

# Two imports for one owner at once would plan from the same "held" and both create or both
# book: a session lock per owner keeps them apart (the second is refused, not queued).
_LOCK = "SELECT pg_try_advisory_lock(hashtextextended('fundhub:init:' || $1, 0))"
_UNLOCK = "SELECT pg_advisory_unlock(hashtextextended('fundhub:init:' || $1, 0))"


class ImportRunning(RuntimeError):
    """Another import for the same owner holds the lock."""


async def lock_owner(conn: Connection, owner_key_id: str) -> None:
    if not await conn.fetchval(_LOCK, owner_key_id):
        raise ImportRunning(f"another import for {owner_key_id} is running; try again after it")


async def unlock_owner(conn: Connection, owner_key_id: str) -> None:
    await conn.fetchval(_UNLOCK, owner_key_id)


async def owner_exists(conn: Connection, owner_key_id: str) -> bool:
    """The tenant the merchants will belong to: a key not revoked (the access context's table,
    read only; a typo would otherwise give the merchants an owner nobody can act as)."""
    found = await conn.fetchval(
        "SELECT 1 FROM api_keys WHERE key_id = $1 AND revoked_at IS NULL", owner_key_id
    )
    return bool(found)


async def posted(
    conn: Connection, owner_key_id: str, merchant_nos: Sequence[str]
) -> dict[str, int]:
    """Opening balances already booked, by merchantNo."""
    rows = await conn.fetch(
        "SELECT merchant_no, amount FROM init_opening_balances"
        " WHERE owner_key_id = $1 AND merchant_no = ANY($2::text[])",
        owner_key_id,
        list(merchant_nos),
    )
    return {r["merchant_no"]: r["amount"] for r in rows}


async def accounts_with_postings(conn: Connection, account_ids: Sequence[str]) -> set[str]:
    """The accounts that have moved money (one index probe each, ``postings_account``)."""
    rows = await conn.fetch(
        "SELECT a FROM unnest($1::text[]) AS t(a)"
        " WHERE EXISTS (SELECT 1 FROM postings p WHERE p.account_id = t.a)",
        list(account_ids),
    )
    return {r["a"] for r in rows}


_INSERT_OPENINGS = BatchInsert(
    "init_opening_balances",
    (
        ("merchant_id", "text"),
        ("owner_key_id", "text"),
        ("merchant_no", "text"),
        ("currency", "text"),
        ("amount", "bigint"),
        ("entry_id", "uuid"),
        ("file_sha256", "text"),
        ("line_no", "integer"),
    ),
)


def opening_writes(owner_key_id: str, openings: Sequence[Opening], file_sha256: str) -> list[Write]:
    return [
        (
            _INSERT_OPENINGS,
            [
                (
                    o.target.merchant_id,
                    owner_key_id,
                    o.row.merchant_no,
                    o.row.currency,
                    o.row.amount_fen,
                    o.entry.entry_id if o.entry is not None else None,
                    file_sha256,
                    o.row.line,
                )
                for o in openings
            ],
        )
    ]
