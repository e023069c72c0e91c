"""What a reconciliation run recorded, read back for a test's assertions."""

from __future__ import annotations

from datetime import date

import asyncpg

from fundhub.reconciliation.statement import Source


async def current_run(pool: asyncpg.Pool, source: Source, day: date) -> asyncpg.Record:
    """The current run of ``source`` and ``day``: its id, counts, sums and unexplained sum."""
    row = await pool.fetchrow(
        "SELECT run_id, counts, sums, unexplained FROM recon_runs "
        "WHERE source = $1 AND day = $2 AND state = 'CURRENT'",
        source.value,
        day,
    )
    assert row is not None, f"no current {source.value} run of {day}"
    return row


async def balance_checks(pool: asyncpg.Pool, run_id: str) -> dict[str, tuple[int, int, int, str]]:
    """Each account's check in the run: the bank's, the ledger's and the explained sum (fen),
    and its state."""
    rows = await pool.fetch(
        "SELECT account, bank_fen, ledger_fen, explained_fen, state FROM recon_balance_checks "
        "WHERE run_id = $1",
        run_id,
    )
    return {
        r["account"]: (r["bank_fen"], r["ledger_fen"], r["explained_fen"], r["state"]) for r in rows
    }
