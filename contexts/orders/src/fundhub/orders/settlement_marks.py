"""What settlement writes on an order, the only writes of the orders table from outside.

``settling_id``: a settlement of the order is under way; refunds wait for it (E044), since it
moves from ``pending`` what they would take. ``settled_at``: the order's shares are in
``available``; refunds take from there. The caller holds the orders' rows locked (settlement
locks the order first, as every writer of orders does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from fundhub.common.db import Connection


async def mark_settling(conn: Connection, settlements: Mapping[str, str]) -> None:
    """Each order (order_id -> settlement_id) has a settlement under way."""
    if settlements:
        await conn.execute(
            "UPDATE orders o SET settling_id = u.sid, updated_at = now()"
            " FROM unnest($1::text[], $2::text[]) AS u(oid, sid) WHERE o.order_id = u.oid",
            list(settlements),
            list(settlements.values()),
        )


async def clear_settling(conn: Connection, order_ids: Sequence[str]) -> None:
    """The depository refused the orders' settlements: refunds may take from pending again."""
    if order_ids:
        await conn.execute(
            "UPDATE orders SET settling_id = NULL, updated_at = now()"
            " WHERE order_id = ANY($1::text[]) AND settled_at IS NULL",
            list(order_ids),
        )


async def mark_settled(conn: Connection, order_ids: Sequence[str], at: datetime) -> None:
    """The orders' shares moved pending -> available (or there was nothing left to move)."""
    if order_ids:
        await conn.execute(
            "UPDATE orders SET settled_at = $2, updated_at = now()"
            " WHERE order_id = ANY($1::text[]) AND settled_at IS NULL",
            list(order_ids),
            at,
        )
