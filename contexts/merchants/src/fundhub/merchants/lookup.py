"""What other contexts read of merchants: which may trade, where their withdrawals go, and
whose their accounts are.

Orders check their receivers here in the transaction that records the order, so a merchant
closed a moment earlier is refused; a merchant of another tenant reads as unknown. Withdrawals
(settlement) pay only to ``settlement_account``, the account verified by micro-deposit; the
balance API lets a tenant read its merchants' ledger accounts (``owns_account``) without the
key being given each account. Bank transfers ask which accounts may no longer take money
(``ClosedMerchantAccounts``): a closing or closed merchant's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

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


@dataclass(frozen=True)
class SettlementAccount:
    """The verified account a merchant's withdrawals go to (its bank verified it)."""

    merchant_id: str
    binding_id: str
    account_no: str
    account_name: str
    bank_name: str
    verified_at: datetime


async def settlement_account(
    conn: Connection, owner_key_id: str, merchant_id: str
) -> SettlementAccount | None:
    """The owner's merchant's verified settlement account, or None: no such merchant (or
    another tenant's), or none verified yet. While a change of account is being verified the
    previous one is returned; a merchant's row is locked against a concurrent change of it."""
    row = await conn.fetchrow(
        "SELECT m.merchant_id, a.binding_id, a.account_no, a.account_name, a.bank_name,"
        " a.verified_at FROM merchants m"
        " JOIN merchant_settlement_accounts a ON a.binding_id = m.settlement_binding"
        " WHERE m.merchant_id = $1 AND m.owner_key_id = $2 AND a.state = 'VERIFIED'"
        " FOR SHARE OF m",
        merchant_id,
        owner_key_id,
    )
    if row is None:
        return None
    return SettlementAccount(
        row["merchant_id"],
        row["binding_id"],
        row["account_no"],
        row["account_name"],
        row["bank_name"],
        row["verified_at"],
    )


async def owns_account(conn: Connection, owner_key_id: str, account_id: str) -> bool:
    """Whether the ledger account is one of the owner's merchants' (whatever their state)."""
    found = await conn.fetchval(
        "SELECT true FROM merchants WHERE account_id = $1 AND owner_key_id = $2",
        account_id,
        owner_key_id,
    )
    return bool(found)


CLOSED_STATES = ("CLOSING", "CLOSED")


class ClosedMerchantAccounts:
    """``bank_transfers.ports.ClosedAccounts``: merchants' accounts that may no longer take
    money, those of a merchant CLOSING or CLOSED (whose close found them empty)."""

    async def closed(
        self, conn: Connection, account_ids: Sequence[str]
    ) -> dict[str, tuple[str, str]]:
        if not account_ids:
            return {}
        rows = await conn.fetch(
            "SELECT account_id, merchant_id, state FROM merchants"
            " WHERE account_id = ANY($1::text[]) AND state = ANY($2::text[])",
            list(account_ids),
            list(CLOSED_STATES),
        )
        return {r["account_id"]: (r["merchant_id"], r["state"]) for r in rows}
