"""The inbox: a message's id recorded in the same transaction as its effects (invariant 2)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from fundhub.common.db import Connection, Step
from fundhub.common.metrics import INBOX_ROWS

T = TypeVar("T")


_CLAIM = (
    "INSERT INTO inbox (consumer, message_id) SELECT $1, unnest($2::text[]) "
    "ON CONFLICT DO NOTHING RETURNING message_id"
)


def claim_step(consumer: str, message_ids: Sequence[str]) -> Step:
    """``claim`` as a step of ``db.run_together``; its rows are the fresh ids."""
    return Step(_CLAIM, (consumer, list(message_ids)))


async def claim(conn: Connection, consumer: str, message_ids: Sequence[str]) -> set[str]:
    """Record the ids inside the caller's transaction; return those not seen before."""
    rows = await conn.fetch(_CLAIM, consumer, list(message_ids))
    return {r["message_id"] for r in rows}


def fresh_items(
    items: Sequence[T], message_id: Callable[[T], str], fresh_ids: set[str]
) -> tuple[list[T], int]:
    """The items whose ids were claimed (the first copy of an id in the batch wins), and how
    many were duplicates."""
    fresh_ids = set(fresh_ids)
    fresh: list[T] = []
    for item in items:
        if message_id(item) in fresh_ids:
            fresh.append(item)
            fresh_ids.discard(message_id(item))
    return fresh, len(items) - len(fresh)


async def take_fresh(
    conn: Connection, consumer: str, items: Sequence[T], message_id: Callable[[T], str]
) -> tuple[list[T], int]:
    """Claim the items' ids; return the items never seen before (the first copy of an id in
    the batch wins) and how many were duplicates."""
    fresh_ids = await claim(conn, consumer, [message_id(item) for item in items])
    return fresh_items(items, message_id, fresh_ids)


_ESTIMATE = "SELECT reltuples::bigint AS n FROM pg_class WHERE oid = 'inbox'::regclass"


async def sample_size(conn: Connection) -> None:
    """The planner's estimate (kept by autovacuum and ANALYZE): a count would read every id."""
    estimate = await conn.fetchval(_ESTIMATE)
    INBOX_ROWS.set(max(0, int(estimate or 0)))  # -1 before the first ANALYZE
