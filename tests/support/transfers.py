"""Many bank transfer notifications at once: random credits, and checks that each landed once."""

from __future__ import annotations

import random

import asyncpg

from fundhub.bank_simulator.notifications import TransferSpec
from support.ledger import assert_ledger_invariants, balances


def random_credits(
    rng: random.Random, prefix: str, count: int, accounts: list[str], max_amount: int
) -> tuple[list[TransferSpec], dict[str, int]]:
    """``count`` credits, record ids ``prefix0``, ``prefix1``..., each to a random account of a
    random amount from 1 to ``max_amount``; and what each account is owed by them in total."""
    specs = [
        TransferSpec(
            record_id=f"{prefix}{i}",
            in_acct_no=rng.choice(accounts),
            trans_amount=rng.randint(1, max_amount),
        )
        for i in range(count)
    ]
    owed: dict[str, int] = {}
    for spec in specs:
        owed[spec.in_acct_no] = owed.get(spec.in_acct_no, 0) + spec.trans_amount
    return specs, owed


async def records_with_prefix(pool: asyncpg.Pool, prefix: str) -> int:
    """How many bank transfer records there are whose record id starts with ``prefix``."""
    n: int = await pool.fetchval(
        "SELECT count(*) FROM bank_transfer_records WHERE record_id LIKE $1", prefix + "%"
    )
    return n


async def assert_credited_once(
    pool: asyncpg.Pool, prefix: str, count: int, owed: dict[str, int]
) -> None:
    """Each account holds what it is owed, all of it available; ``count`` journal entries have
    a ref id starting with ``prefix`` (one per record); the ledger's invariants hold."""
    found = await balances(pool)
    for account, total in owed.items():
        assert found[account] == (total, 0), account
    entries = await pool.fetchval(
        "SELECT count(*) FROM journal_entries WHERE ref_id LIKE $1", prefix + "%"
    )
    assert entries == count
    await assert_ledger_invariants(pool)
