"""Balances as the operator reads them (``fundhub balance``, ``fundhub accounts``); the read itself
is the ledger's (``fundhub.ledger.balances``), the same the API uses."""

from __future__ import annotations

from typing import Any

from fundhub.cli.tables import render_table
from fundhub.common.clock import iso_utc
from fundhub.common.money import CURRENCIES
from fundhub.ledger.balances import AccountBalance


def format_minor(amount: int, currency: str) -> str:
    """Integer minor units as a decimal string (``123456`` CNY -> ``1,234.56``); no floats."""
    exponent = CURRENCIES.get(currency, 2)
    sign = "-" if amount < 0 else ""
    units, minor = divmod(abs(amount), 10**exponent)
    return f"{sign}{units:,}.{minor:0{exponent}d}" if exponent else f"{sign}{units:,}"


def balance_json(balance: AccountBalance) -> dict[str, Any]:
    return {
        "accountId": balance.account_id,
        "kind": balance.kind,
        "currency": balance.currency,
        "name": balance.name,
        "available": balance.available,
        "frozen": balance.frozen,
        "pending": balance.pending,
        "updatedAt": iso_utc(balance.updated_at) if balance.updated_at else None,
    }


def describe_balance(balance: AccountBalance) -> str:
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


def balances_table(balances: list[AccountBalance]) -> str:
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
