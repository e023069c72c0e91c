"""How big the books are per row and per payout, measured on a real database.

Point it at a database after a run that moved money (an e2e run's database before it is
dropped, or the dev stack's after ``bench/payouts_e2e.py``):

    .venv/bin/python bench/books_size.py --database-url postgresql://…/fundhub --per-day 100000

Per table of the books: rows, ``pg_total_relation_size`` (heap, TOAST and indexes) and bytes per
row. Then what one payout leaves (its rows in each table, by its references) and a year of
them at ``--per-day``. Small samples overstate bytes per row (a page is 8 KiB, an index has
its root): trust the figures from some thousands of rows up.
"""

from __future__ import annotations

import argparse
import asyncio
import json

import asyncpg

BOOKS = (
    "journal_entries",
    "postings",
    "bank_notifications",
    "bank_transfer_records",
    "payout_requests",
    "payouts",
    "callback_deliveries",
    "callback_attempts",
    "orders",
    "order_parts",
    "order_refunds",
    "settlements",
    "audit_log",
)

# Rows per payout, counted through the payout's own references.
_PER_PAYOUT = """
SELECT
  (SELECT count(*) FROM payouts) AS payouts,
  (SELECT count(*) FROM payout_requests) AS payout_requests,
  (SELECT count(*) FROM journal_entries WHERE ref_type = 'payout') AS journal_entries,
  (SELECT count(*) FROM postings p JOIN journal_entries j USING (entry_id)
    WHERE j.ref_type = 'payout') AS postings,
  (SELECT count(*) FROM callback_deliveries d JOIN payouts p ON p.pay_id = d.pay_id)
    AS callback_deliveries,
  (SELECT count(*) FROM callback_attempts a JOIN callback_deliveries d USING (delivery_id)
    JOIN payouts p ON p.pay_id = d.pay_id) AS callback_attempts
"""
# The bank's result notifications of payouts are not kept as received (only their ids, in the
# inbox, for its window): a payout's books are its rows, its entries and its callbacks.
# A partitioned table (audit_log) is the sum of its partitions.
_SIZE = """
SELECT pg_total_relation_size($1::regclass) + coalesce((
    SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree($1::regclass)
     WHERE relid <> $1::regclass), 0)::bigint
"""


async def measure(dsn: str, per_day: int) -> dict[str, object]:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("ANALYZE")
        tables = {}
        for table in BOOKS:
            if await conn.fetchval("SELECT to_regclass($1)", table) is None:
                continue
            rows = await conn.fetchval(f"SELECT count(*) FROM {table}")
            size = await conn.fetchval(_SIZE, table)
            tables[table] = {
                "rows": rows,
                "bytes": size,
                "bytesPerRow": round(size / rows) if rows else None,
            }
        counts = dict(await conn.fetchrow(_PER_PAYOUT))
    finally:
        await conn.close()
    payouts = counts.pop("payouts")
    per_payout: dict[str, float] = {}
    bytes_per_payout = 0.0
    if payouts:
        for table, rows in counts.items():
            share = rows / payouts
            per_payout[table] = round(share, 3)
            per_row = tables.get(table, {}).get("bytesPerRow") or 0
            bytes_per_payout += share * per_row
    year = bytes_per_payout * per_day * 365
    return {
        "tables": tables,
        "payouts": payouts,
        "rowsPerPayout": per_payout,
        "bytesPerPayout": round(bytes_per_payout),
        "perDay": per_day,
        "bytesPerYear": round(year),
        "gibPerYear": round(year / 2**30, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--per-day", type=int, default=100_000, help="payouts a day")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.database_url, args.per_day)), indent=2))


if __name__ == "__main__":
    main()
