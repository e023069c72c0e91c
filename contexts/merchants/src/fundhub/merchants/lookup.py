"""Which merchants may trade: the one read other contexts (orders, settlement) make of merchants.

Orders check their receivers here in the transaction that records the order, so a merchant
closed a moment earlier is refused; a merchant of another tenant reads as unknown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from fundhub.common.db import Connection

TRADING_STATE = "ACTIVE"


@dataclass(frozen=True)
class MerchantStanding:
    merchant_id: str
    state: str
    account_id: str
    currency: str

    @property
    def may_trade(self) -> bool:
        return self.state == TRADING_STATE


async def standings(
    conn: Connection, owner_key_id: str, merchant_ids: Iterable[str]
) -> dict[str, MerchantStanding]:
    """The owner's merchants among ``merchant_ids``, locked against a concurrent close."""
    rows = await conn.fetch(
        "SELECT merchant_id, state, account_id, currency FROM merchants"
        " WHERE owner_key_id = $1 AND merchant_id = ANY($2::text[])"
        " ORDER BY merchant_id FOR SHARE",
        owner_key_id,
        sorted(set(merchant_ids)),
    )
    return {
        r["merchant_id"]: MerchantStanding(
            r["merchant_id"], r["state"], r["account_id"], r["currency"].strip()
        )
        for r in rows
    }
