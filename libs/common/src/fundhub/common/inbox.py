"""The inbox: a message's id recorded in the same transaction as its effects (invariant 2)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import asyncpg

T = TypeVar("T")


async def claim(conn: asyncpg.Connection, consumer: str, message_ids: Sequence[str]) -> set[str]:
    """Record the ids inside the caller's transaction; return those not seen before."""
    rows = await conn.fetch(
        "INSERT INTO inbox (consumer, message_id) SELECT $1, unnest($2::text[]) "
        "ON CONFLICT DO NOTHING RETURNING message_id",
        consumer,
        list(message_ids),
    )
    return {r["message_id"] for r in rows}


async def take_fresh(
    conn: asyncpg.Connection, consumer: str, items: Sequence[T], message_id: Callable[[T], str]
) -> tuple[list[T], int]:
    """Claim the items' ids; return the items never seen before (the first copy of an id in
    the batch wins) and how many were duplicates."""
    fresh_ids = await claim(conn, consumer, [message_id(item) for item in items])
    fresh: list[T] = []
    for item in items:
        if message_id(item) in fresh_ids:
            fresh.append(item)
            fresh_ids.discard(message_id(item))
    return fresh, len(items) - len(fresh)
