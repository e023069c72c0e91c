"""Reading account balances for the operator (``fundhub balance``, ``fundhub accounts``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fundhub.cli.tables import render_table
from fundhub.common.clock import iso_utc
from fundhub.common.money import CURRENCIES

_BUCKETS = ("available", "frozen", "pending")


@dataclass(frozen=True)
class Balance:
    account_id: str
    kind: str
    currency: str
    name: str | None
    available: int
    frozen: int
    pending: int
    updated_at: datetime | None
    derived: bool  # summed from postings (system accounts keep no balance row)

    def as_json(self) -> dict[str, Any]:
        return {
            "accountId": self.account_id,
            "kind": self.kind,
            "currency": self.currency,
            "name": self.name,
            "available": self.available,
            "frozen": self.frozen,
            "pending": self.pending,
            "updatedAt": iso_utc(self.updated_at) if self.updated_at else None,
        }


def format_minor(amount: int, currency: str) -> str:
    """Integer minor units as a decimal string (``123456`` CNY -> ``1,234.56``); no floats."""
    exponent = CURRENCIES.get(currency, 2)
    sign = "-" if amount < 0 else ""
    units, minor = divmod(abs(amount), 10**exponent)
    return f"{sign}{units:,}.{minor:0{exponent}d}" if exponent else f"{sign}{units:,}"


_SELECT = """
    SELECT a.account_id, a.kind, a.currency, a.name,
           b.available, b.frozen, b.pending, b.updated_at
      FROM accounts a
      LEFT JOIN account_balances b USING (account_id)
"""


async def _from_row(conn: Any, row: Any) -> Balance:
    buckets = {name: row[name] for name in _BUCKETS}
    derived = row["available"] is None
    if derived:
        sums = await conn.fetch(
            "SELECT bucket, sum(amount)::bigint AS total FROM postings"
            " WHERE account_id = $1 GROUP BY bucket",
            row["account_id"],
        )
        buckets = {name: 0 for name in _BUCKETS} | {r["bucket"]: r["total"] for r in sums}
    return Balance(
        account_id=row["account_id"],
        kind=row["kind"],
        currency=row["currency"].strip(),
        name=row["name"],
        available=buckets["available"],
        frozen=buckets["frozen"],
        pending=buckets["pending"],
        updated_at=row["updated_at"],
        derived=derived,
    )


async def fetch_balance(conn: Any, account_id: str) -> Balance | None:
    row = await conn.fetchrow(_SELECT + " WHERE a.account_id = $1", account_id)
    return None if row is None else await _from_row(conn, row)


async def fetch_customer_balances(conn: Any) -> list[Balance]:
    rows = await conn.fetch(_SELECT + " WHERE a.kind = 'customer' ORDER BY a.account_id")
    return [await _from_row(conn, row) for row in rows]


def describe_balance(balance: Balance) -> str:
    cur = balance.currency
    lines = [
        f"account    {balance.account_id}" + (f"  ({balance.name})" if balance.name else ""),
        f"kind       {balance.kind}" + ("  (summed from postings)" if balance.derived else ""),
        f"currency   {cur}",
        f"available  {format_minor(balance.available, cur)}",
        f"frozen     {format_minor(balance.frozen, cur)}",
        f"pending    {format_minor(balance.pending, cur)}",
    ]
    if balance.updated_at is not None:
        lines.append(f"updated    {iso_utc(balance.updated_at)}")
    return "\n".join(lines)


def balances_table(balances: list[Balance]) -> str:
    headers = ["ACCOUNT", "NAME", "CUR", "AVAILABLE", "FROZEN", "PENDING", "UPDATED"]
    rows = [
        [
            b.account_id,
            b.name or "",
            b.currency,
            format_minor(b.available, b.currency),
            format_minor(b.frozen, b.currency),
            format_minor(b.pending, b.currency),
            iso_utc(b.updated_at) if b.updated_at else "",
        ]
        for b in balances
    ]
    return render_table(headers, rows, right={3, 4, 5})
