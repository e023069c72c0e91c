"""Ledger assertions straight from Postgres: the invariants every money test ends with."""

from __future__ import annotations

import asyncpg


async def assert_ledger_invariants(pool: asyncpg.Pool) -> None:
    """Every entry sums to zero per currency; every balance row equals the sum of its postings;
    no customer balance is negative."""
    unbalanced = await pool.fetch(
        "SELECT entry_id, currency, sum(amount) AS s FROM postings "
        "GROUP BY entry_id, currency HAVING sum(amount) <> 0"
    )
    assert unbalanced == [], f"unbalanced journal entries: {unbalanced[:5]}"
    drift = await pool.fetch(
        """
        SELECT b.account_id, b.available, b.frozen, b.pending,
               coalesce(sum(p.amount) FILTER (WHERE p.bucket = 'available'), 0) AS pa,
               coalesce(sum(p.amount) FILTER (WHERE p.bucket = 'frozen'), 0) AS pf,
               coalesce(sum(p.amount) FILTER (WHERE p.bucket = 'pending'), 0) AS pp
        FROM account_balances b LEFT JOIN postings p USING (account_id)
        GROUP BY b.account_id, b.available, b.frozen, b.pending
        HAVING b.available <> coalesce(sum(p.amount) FILTER (WHERE p.bucket = 'available'), 0)
            OR b.frozen <> coalesce(sum(p.amount) FILTER (WHERE p.bucket = 'frozen'), 0)
            OR b.pending <> coalesce(sum(p.amount) FILTER (WHERE p.bucket = 'pending'), 0)
        """
    )
    assert drift == [], f"balances differ from their postings: {drift[:5]}"
    negative = await pool.fetch(
        "SELECT account_id FROM account_balances WHERE available < 0 OR frozen < 0 OR pending < 0"
    )
    assert negative == [], f"negative balances: {negative[:5]}"


async def balances(pool: asyncpg.Pool) -> dict[str, tuple[int, int]]:
    rows = await pool.fetch("SELECT account_id, available, frozen FROM account_balances")
    return {r["account_id"]: (r["available"], r["frozen"]) for r in rows}


async def counts(pool: asyncpg.Pool) -> tuple[int, int, int]:
    """(records, journal entries, postings): unchanged counts mean nothing was posted."""
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM bank_transfer_records) AS r, "
        "(SELECT count(*) FROM journal_entries) AS j, (SELECT count(*) FROM postings) AS p"
    )
    assert row is not None
    return row["r"], row["j"], row["p"]
