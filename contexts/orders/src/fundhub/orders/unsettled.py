"""The orders' answer to the merchants' close: how many unsettled orders name a merchant.

A merchant may close only when no order can still bring it money or take money back from it:
an order not yet paid or closed (the payer may still pay), a paid order not settled yet (its
share is in pending), and any order with a refund in progress (its share is frozen). Settled,
closed and failed orders without a refund in progress do not count.
"""

from __future__ import annotations

from fundhub.common.db import Connection

_COUNT = """
SELECT count(*) FROM orders o
WHERE EXISTS (SELECT 1 FROM order_parts p WHERE p.order_id = o.order_id AND p.merchant_id = $1)
  AND (o.state IN ('CREATED', 'AWAITING_PAYMENT')
       OR (o.state = 'PAID' AND o.settled_at IS NULL)
       OR EXISTS (SELECT 1 FROM order_refunds r
                  WHERE r.order_id = o.order_id AND r.state = 'PROCESSING'))
"""


async def count(conn: Connection, merchant_id: str) -> int:
    """Unsettled orders naming ``merchant_id`` as a receiver (see the module's docstring)."""
    return int(await conn.fetchval(_COUNT, merchant_id))
