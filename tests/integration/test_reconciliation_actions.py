"""Actions on discrepancies against real Postgres: an adjustment under four eyes posts one
balanced entry; carry over, write off and re-open; every action kept with who, when and why."""

from __future__ import annotations

from datetime import date

import asyncpg
import pytest
from support.env import ModuleEnv
from support.ledger import assert_ledger_invariants
from support.recon_world import Transfer, add_transfers, at, bank_lines, statement

from fundhub.reconciliation.actions import ADJUSTMENTS, AdjustmentRefused, act
from fundhub.reconciliation.discrepancy_states import (
    Action,
    Adjustment,
    InvalidAction,
    OwnApproval,
    State,
    StateConflict,
)
from fundhub.reconciliation.matching import reconcile
from fundhub.reconciliation.statement import Source
from fundhub.reconciliation.store import import_statement, sha256_of

ACCOUNT = "6222020000007001"


async def _open_discrepancies(pool: asyncpg.Pool, n: int) -> list[str]:
    """``n`` credits the ledger has and the bank's file lacks: n discrepancies."""
    day = date(2026, 4, 1)
    async with pool.acquire() as conn:
        await add_transfers(
            conn, [Transfer(f"TRA{i}", ACCOUNT, 10_000 + i, at(day, 10, i)) for i in range(n + 1)]
        )
        lines = await bank_lines(conn, day)
    st = statement(Source.BANK, day, [li for li in lines if li.reference == "TRA0"])
    async with pool.acquire() as conn, conn.transaction():
        await import_statement(conn, st, name="bank.txt", sha256=sha256_of(b"a"), imported_by="t")
        run = await reconcile(conn, Source.BANK, day, run_by="t")
    rows = await pool.fetch(
        "SELECT discrepancy_id FROM recon_discrepancies WHERE run_id = $1 ORDER BY 1", run.run_id
    )
    assert len(rows) == n
    return [r["discrepancy_id"] for r in rows]


async def _do(pool: asyncpg.Pool, did: str, action: Action, actor: str, **kw: object):  # type: ignore[no-untyped-def]
    async with pool.acquire() as conn, conn.transaction():
        return await act(conn, did, action, actor=actor, **kw)  # type: ignore[arg-type]


async def test_four_eyes_adjustment_posts_one_balanced_entry(env: ModuleEnv) -> None:
    first, second, third, fourth = await _open_discrepancies(env.pool, 4)
    before = await env.pool.fetchval(
        "SELECT available FROM account_balances WHERE account_id = $1", ACCOUNT
    )
    await _do(env.pool, first, Action.PROPOSE, "alice", adjustment=Adjustment(ACCOUNT, -10_001))
    with pytest.raises(OwnApproval):
        await _do(env.pool, first, Action.APPROVE, "alice")
    done = await _do(env.pool, first, Action.APPROVE, "bob", reason="the bank never got it")
    assert done.to_state is State.RESOLVED and done.entry_id
    after = await env.pool.fetchval(
        "SELECT available FROM account_balances WHERE account_id = $1", ACCOUNT
    )
    assert after == before - 10_001
    postings = await env.pool.fetch(
        "SELECT account_id, amount FROM postings WHERE entry_id = $1 ORDER BY amount",
        done.entry_id,
    )
    assert [(p["account_id"], p["amount"]) for p in postings] == [
        (ACCOUNT, -10_001),
        (ADJUSTMENTS, 10_001),
    ]
    await assert_ledger_invariants(env.pool)
    with pytest.raises(StateConflict):
        await _do(env.pool, first, Action.REOPEN, "carol", reason="again")

    # carry over, write off (a reason is required), re-open
    await _do(env.pool, second, Action.CARRY_OVER, "alice", reason="ask the bank")
    with pytest.raises(InvalidAction):
        await _do(env.pool, second, Action.WRITE_OFF, "alice")
    await _do(env.pool, second, Action.WRITE_OFF, "alice", reason="below the threshold")
    await _do(env.pool, second, Action.REOPEN, "bob", reason="the bank found it")
    # a proposal withdrawn by re-opening; a proposal the ledger refuses stays unapproved
    await _do(env.pool, third, Action.PROPOSE, "alice", adjustment=Adjustment(ACCOUNT, 5))
    await _do(env.pool, third, Action.REOPEN, "alice", reason="wrong account")
    await _do(env.pool, fourth, Action.PROPOSE, "alice", adjustment=Adjustment(ACCOUNT, -(10**12)))
    with pytest.raises(AdjustmentRefused):
        await _do(env.pool, fourth, Action.APPROVE, "bob")
    await _do(env.pool, fourth, Action.REOPEN, "alice", reason="too much")
    await _do(env.pool, fourth, Action.PROPOSE, "alice", adjustment=Adjustment("nope-1", 5))
    with pytest.raises(AdjustmentRefused):
        await _do(env.pool, fourth, Action.APPROVE, "bob")
    await assert_ledger_invariants(env.pool)

    history = await env.pool.fetch(
        "SELECT discrepancy_id, action, from_state, to_state, actor, reason FROM recon_actions "
        "ORDER BY action_id"
    )
    assert [
        (h["action"], h["actor"], h["to_state"]) for h in history if h["discrepancy_id"] == second
    ] == [
        ("CARRY_OVER", "alice", "CARRIED_OVER"),
        ("WRITE_OFF", "alice", "WRITTEN_OFF"),
        ("REOPEN", "bob", "OPEN"),
    ]
    states = {
        r["discrepancy_id"]: r["state"]
        for r in await env.pool.fetch("SELECT discrepancy_id, state FROM recon_discrepancies")
    }
    assert states[first] == "RESOLVED" and states[second] == "OPEN" and states[third] == "OPEN"
    assert states[fourth] == "ADJUSTMENT_PROPOSED"
    with pytest.raises(asyncpg.RaiseError):
        await env.pool.execute("DELETE FROM recon_actions")
