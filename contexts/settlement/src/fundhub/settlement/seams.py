"""What settlement reads and writes of the orders and merchants contexts: the one module that
knows their tables, so joining them is a change here only.

Orders: an order is settleable when PAID and not settled (``orders.settled_at``); its parts
(``order_parts``: each receiver's share and the platform fee, each on a ledger account) are
what the settlement moves, less what refunds took from ``pending`` before it (the refunds
held from ``pending`` and not given back: PROCESSING or SUCCESS). A refund admitted but not
held yet has not chosen its bucket: an order with one is not settled until it is held.
Merchants: the name the depository knows a receiver by (its approved material), and, for a
withdrawal, its standing and its verified settlement account (``merchants.lookup``).

Locks are taken in one order everywhere: orders, then settlements, then balances. The writes
(settling, settled) are the orders context's own functions (``orders.settlement_marks``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from fundhub.common.db import Connection, Row
from fundhub.merchants import lookup
from fundhub.settlement.amounts import ReceiverShare

PAID = "PAID"
PLATFORM_FEE_NAME = "platform fee"


@dataclass(frozen=True)
class SettleableOrder:
    """An order as settlement sees it, read under its row lock."""

    order_id: str
    key_id: str
    order_no: str
    state: str
    currency: str
    notify_url: str | None
    paid_at: datetime | None
    settled_at: datetime | None
    shares: tuple[ReceiverShare, ...]
    refunds_unheld: int  # refunds admitted whose money is not taken yet

    @property
    def paid(self) -> bool:
        return self.state == PAID

    @property
    def settled(self) -> bool:
        return self.settled_at is not None


_ORDER_COLUMNS = (
    "o.order_id, o.key_id, o.order_no, o.state, o.currency, o.notify_url, o.paid_at, o.settled_at"
)
_SHARES = """
SELECT p.order_id, p.position, p.merchant_id, p.account_id, p.amount,
       coalesce((SELECT sum(r.allocation[p.position + 1]) FROM order_refunds r
                 WHERE r.order_id = p.order_id AND r.held AND r.source_bucket = 'pending'
                   AND r.state IN ('PROCESSING', 'SUCCESS')), 0)::bigint AS refunded
FROM order_parts p WHERE p.order_id = ANY($1::text[])
ORDER BY p.order_id, p.position
"""
_UNHELD = """
SELECT order_id, count(*) AS n FROM order_refunds
WHERE order_id = ANY($1::text[]) AND state = 'PROCESSING' AND NOT held
GROUP BY order_id
"""


async def _complete(conn: Connection, rows: Sequence[Row]) -> list[SettleableOrder]:
    ids = [str(r["order_id"]) for r in rows]
    shares: dict[str, list[ReceiverShare]] = {i: [] for i in ids}
    for part in await conn.fetch(_SHARES, ids):
        shares[part["order_id"]].append(
            ReceiverShare(part["merchant_id"], part["account_id"], part["amount"], part["refunded"])
        )
    unheld = {r["order_id"]: r["n"] for r in await conn.fetch(_UNHELD, ids)}
    return [
        SettleableOrder(
            order_id=str(r["order_id"]),
            key_id=str(r["key_id"]),
            order_no=str(r["order_no"]),
            state=str(r["state"]),
            currency=str(r["currency"]).strip(),
            notify_url=r["notify_url"],
            paid_at=r["paid_at"],
            settled_at=r["settled_at"],
            shares=tuple(shares[str(r["order_id"])]),
            refunds_unheld=int(unheld.get(r["order_id"], 0)),
        )
        for r in rows
    ]


async def lock_order(conn: Connection, key_id: str, order_no: str) -> SettleableOrder | None:
    """The tenant's order by its orderNo, locked (another tenant's reads as missing)."""
    row = await conn.fetchrow(
        f"SELECT {_ORDER_COLUMNS} FROM orders o WHERE o.key_id = $1 AND o.order_no = $2 FOR UPDATE",
        key_id,
        order_no,
    )
    if row is None:
        return None
    return (await _complete(conn, [row]))[0]


async def lock_orders_by_no(
    conn: Connection, wanted: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], SettleableOrder]:
    """The tenants' orders by (key_id, orderNo), locked in id order (no deadlock with another
    batch); another tenant's order is simply not found."""
    rows = await conn.fetch(
        f"SELECT {_ORDER_COLUMNS} FROM orders o "
        "JOIN unnest($1::text[], $2::text[]) AS u(key_id, order_no) "
        "ON o.key_id = u.key_id AND o.order_no = u.order_no "
        "ORDER BY o.order_id FOR UPDATE OF o",
        [k for k, _ in wanted],
        [n for _, n in wanted],
    )
    return {(o.key_id, o.order_no): o for o in await _complete(conn, rows)}


async def order_id_of(conn: Connection, key_id: str, order_no: str) -> str | None:
    """The tenant's order's id (another tenant's reads as missing), without a lock."""
    order_id: str | None = await conn.fetchval(
        "SELECT order_id FROM orders WHERE key_id = $1 AND order_no = $2", key_id, order_no
    )
    return order_id


async def lock_orders(conn: Connection, order_ids: Iterable[str]) -> dict[str, SettleableOrder]:
    """The orders, locked in id order (no deadlock between two batches)."""
    rows = await conn.fetch(
        f"SELECT {_ORDER_COLUMNS} FROM orders o WHERE o.order_id = ANY($1::text[]) "
        "ORDER BY o.order_id FOR UPDATE",
        sorted(set(order_ids)),
    )
    return {o.order_id: o for o in await _complete(conn, rows)}


async def lock_order_rows(conn: Connection, order_ids: Iterable[str]) -> None:
    """Lock the orders (id order) without reading them: a settlement about to move their
    money keeps a refund's hold from racing it."""
    await conn.execute(
        "SELECT 1 FROM orders WHERE order_id = ANY($1::text[]) ORDER BY order_id FOR UPDATE",
        sorted(set(order_ids)),
    )


async def claim_due_orders(
    conn: Connection, paid_before: datetime, limit: int
) -> list[SettleableOrder]:
    """Up to ``limit`` orders due to settle by their cut-off (paid before ``paid_before``),
    never settled nor attempted and with no refund waiting to be held, oldest first, locked;
    rows another runner holds are skipped
    (SKIP LOCKED), so two schedulers take disjoint orders. Read through the partial index on
    the payment time of unsettled orders, not by scanning the orders."""
    rows = await conn.fetch(
        f"""
        SELECT {_ORDER_COLUMNS} FROM orders o
        WHERE o.state = 'PAID' AND o.settled_at IS NULL AND o.paid_at < $1
          AND NOT EXISTS (SELECT 1 FROM settlements s WHERE s.order_id = o.order_id)
          AND NOT EXISTS (SELECT 1 FROM order_refunds r WHERE r.order_id = o.order_id
                          AND r.state = 'PROCESSING' AND NOT r.held)
        ORDER BY o.paid_at LIMIT $2
        FOR UPDATE OF o SKIP LOCKED
        """,
        paid_before,
        limit,
    )
    return await _complete(conn, rows)


async def member_names(conn: Connection, merchant_ids: Iterable[str]) -> dict[str, str]:
    """The name the depository knows each merchant by: its material version in force."""
    rows = await conn.fetch(
        "SELECT m.merchant_id, coalesce(v.materials->>'name', m.merchant_no) AS name "
        "FROM merchants m LEFT JOIN merchant_versions v "
        "ON v.merchant_id = m.merchant_id AND v.version = m.approved_version "
        "WHERE m.merchant_id = ANY($1::text[])",
        sorted(set(merchant_ids)),
    )
    return {r["merchant_id"]: r["name"] for r in rows}


@dataclass(frozen=True)
class WithdrawingMerchant:
    """A merchant as a withdrawal needs it: whether it may, its account, where money goes."""

    merchant_id: str
    merchant_no: str
    state: str
    account_id: str
    currency: str
    notify_url: str | None
    available: int
    # The verified settlement account, None when there is none.
    payee_account_no: str | None
    payee_account_name: str | None
    payee_bank_name: str | None


async def withdrawing_merchant(
    conn: Connection, owner_key_id: str, merchant_id: str
) -> WithdrawingMerchant | None:
    """The owner's merchant (another tenant's reads as missing), its available balance, and
    its verified settlement account (``merchants.lookup.settlement_account``)."""
    row = await conn.fetchrow(
        """
        SELECT m.merchant_id, m.merchant_no, m.state, m.account_id, m.currency, m.notify_url,
               coalesce(b.available, 0) AS available
        FROM merchants m LEFT JOIN account_balances b ON b.account_id = m.account_id
        WHERE m.owner_key_id = $1 AND m.merchant_id = $2
        """,
        owner_key_id,
        merchant_id,
    )
    if row is None:
        return None
    account = await lookup.settlement_account(conn, owner_key_id, merchant_id)
    return WithdrawingMerchant(
        merchant_id=row["merchant_id"],
        merchant_no=row["merchant_no"],
        state=row["state"],
        account_id=row["account_id"],
        currency=str(row["currency"]).strip(),
        notify_url=row["notify_url"],
        available=row["available"],
        payee_account_no=account.account_no if account else None,
        payee_account_name=account.account_name if account else None,
        payee_bank_name=account.bank_name if account else None,
    )
