"""The inbox: a message's id recorded in the same transaction as its effects (invariant 2)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg


async def claim(conn: asyncpg.Connection, consumer: str, message_ids: Sequence[str]) -> set[str]:
    """Record the ids inside the caller's transaction; return those not seen before."""
    rows = await conn.fetch(
        "INSERT INTO inbox (consumer, message_id) SELECT $1, unnest($2::text[]) "
        "ON CONFLICT DO NOTHING RETURNING message_id",
        consumer,
        list(message_ids),
    )
    return {r["message_id"] for r in rows}
