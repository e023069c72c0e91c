"""What the merchants context asks of others: the seam through which orders tell a close whether
a merchant still has money on its way. No implementation here.

A merchant may close only when no order of it is unsettled (its share not yet moved from
``pending`` to ``available``, a refund still open): the money's owner must be known when it
lands. The orders context implements ``UnsettledOrders`` against its tables; the composition
root (the gateway's ``app.py``) passes every implementation to ``admission.MerchantAdmission``,
which asks all of them in the transaction that decides the close, after locking the merchant
(so an order recorded concurrently either sees CLOSING or is counted here).
"""

from __future__ import annotations

from typing import Protocol

from fundhub.common.db import Connection


class UnsettledOrders(Protocol):
    async def count(self, conn: Connection, merchant_id: str) -> int:
        """How many of the merchant's orders are not settled yet, read in ``conn``'s
        transaction (the caller holds the merchant's row lock)."""
        ...
