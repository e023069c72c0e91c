"""notify-ingest's batch handler against real Postgres: inbox dedupe, the ledger's guards, and
credits for a merchant that may no longer take money held in suspense."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from support.env import ModuleEnv
from support.ledger import assert_ledger_invariants, balances
from support.settlement_world import merchant

from fundhub.bank_simulator.notifications import TransferSpec, biz_content
from fundhub.bank_transfers.apply import apply_transfer_notifications
from fundhub.bank_transfers.messages import TransferMessage
from fundhub.bank_transfers.notification import notification_message_id, parse_transfer_biz_content
from fundhub.common.clock import utcnow
from fundhub.common.topics import Topics
from fundhub.ledger.rules import BANK_SUSPENSE, system_account
from fundhub.merchants.lookup import ClosedMerchantAccounts

APP = "20210911888888888888888888"
TOPICS = Topics("integration")


def message(spec: TransferSpec) -> TransferMessage:
    text = biz_content(spec)
    return TransferMessage(
        message_id=notification_message_id(APP, text),
        correlation_id=uuid.uuid4().hex,
        app_id=APP,
        params={"method": "bkfunds.acct.transfer.notify", "biz_content": text},
        notice=parse_transfer_biz_content(text),
        received_at=utcnow(),
    )


async def apply(pool: asyncpg.Pool, messages: list[TransferMessage]) -> object:
    async with pool.acquire() as conn, conn.transaction():
        return await apply_transfer_notifications(conn, TOPICS, messages, ClosedMerchantAccounts())


async def test_duplicates_in_and_across_batches_post_once(env: ModuleEnv) -> None:
    arrival = message(TransferSpec(record_id="int-1", in_acct_no="7000001", trans_amount=1500))
    result = await apply(env.pool, [arrival, arrival, arrival])
    assert (result.applied, result.duplicates) == (1, 2)  # type: ignore[attr-defined]
    redelivered = await apply(env.pool, [arrival])
    assert (redelivered.applied, redelivered.duplicates) == (0, 1)  # type: ignore[attr-defined]
    assert (await balances(env.pool))["7000001"] == (1500, 0)
    events = await env.pool.fetchval(
        "SELECT count(*) FROM outbox WHERE topic = $1", TOPICS.ledger_events
    )
    assert events == 1
    await assert_ledger_invariants(env.pool)


async def test_lifecycle_in_one_batch_reaches_deducted(env: ModuleEnv) -> None:
    base = dict(record_id="int-2", in_acct_no="7000002", trans_amount=900)
    batch = [message(TransferSpec(**base, deduct_status=s)) for s in ("0", "6", "1")]  # type: ignore[arg-type]
    result = await apply(env.pool, batch)
    assert result.applied == 3  # type: ignore[attr-defined]
    state = await env.pool.fetchval(
        "SELECT state FROM bank_transfer_records WHERE record_id = 'int-2'"
    )
    assert state == "DEDUCTED"
    assert (await balances(env.pool))["7000002"] == (0, 0)
    await assert_ledger_invariants(env.pool)


async def test_an_unbalanced_entry_cannot_commit(env: ModuleEnv) -> None:
    """The database itself refuses an entry whose postings do not sum to zero."""
    async with env.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO accounts (account_id, kind, currency) VALUES ('7000003', 'customer', 'CNY') "
            "ON CONFLICT DO NOTHING"
        )
        with pytest.raises(asyncpg.RaiseError, match="does not balance"):
            async with conn.transaction():
                entry = uuid.uuid4()
                await conn.execute(
                    "INSERT INTO journal_entries (entry_id, kind, ref_type, ref_id) VALUES ($1, 'x', 'x', 'x')",
                    entry,
                )
                await conn.execute(
                    "INSERT INTO postings (entry_id, account_id, bucket, currency, amount) "
                    "VALUES ($1, '7000003', 'available', 'CNY', 100)",
                    entry,
                )


async def test_a_customer_balance_cannot_go_negative(env: ModuleEnv) -> None:
    async with env.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO accounts (account_id, kind, currency) VALUES ('7000004', 'customer', 'CNY');"
            "INSERT INTO account_balances (account_id, currency) VALUES ('7000004', 'CNY')"
        )
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "UPDATE account_balances SET available = -1 WHERE account_id = '7000004'"
            )


async def _held(pool: asyncpg.Pool, account_id: str) -> int:
    total: int = await pool.fetchval(
        "SELECT coalesce(sum(amount), 0) FROM postings WHERE account_id = $1", account_id
    )
    return total


async def test_a_credit_for_a_closing_or_closed_merchant_is_held_in_suspense(
    env: ModuleEnv,
) -> None:
    """Its close found the account empty and nobody can withdraw from it: the money goes to the
    suspense account, kept as an exception (with an alert); its later notices follow it there."""
    owner = "ak_0000000000000000000s"
    closing = await merchant(env.pool, owner, "Closing Co", state="CLOSING")
    closed = await merchant(env.pool, owner, "Closed Co", state="CLOSED")
    active = await merchant(env.pool, owner, "Active Co")
    arrivals = [
        message(TransferSpec(record_id=f"int-s{i}", in_acct_no=m.account_id, trans_amount=700))
        for i, m in enumerate((closing, closed, active))
    ]
    result = await apply(env.pool, arrivals)
    suspense = system_account(BANK_SUSPENSE, "CNY")
    held = sorted((s.holder, s.holder_state, s.held_in) for s in result.suspended)  # type: ignore[attr-defined]
    assert held == sorted(
        [(closing.merchant_id, "CLOSING", suspense), (closed.merchant_id, "CLOSED", suspense)]
    )
    found = await balances(env.pool)
    assert found[closing.account_id] == found[closed.account_id] == (0, 0)
    assert found[active.account_id] == (700, 0)
    assert await _held(env.pool, suspense) == 1400
    rows = await env.pool.fetch(
        "SELECT record_id, account_id, holder, holder_state, held_in, amount"
        " FROM bank_transfer_exceptions ORDER BY record_id"
    )
    assert [tuple(r.values()) for r in rows] == [
        ("int-s0", closing.account_id, closing.merchant_id, "CLOSING", suspense, 700),
        ("int-s1", closed.account_id, closed.merchant_id, "CLOSED", suspense, 700),
    ]

    # The bank holds, then returns one of them: both move out of the suspense, not the account.
    spec = dict(record_id="int-s0", in_acct_no=closing.account_id, trans_amount=700)
    later = [
        message(TransferSpec(**spec, deduct_status="6")),
        message(TransferSpec(**spec, reverse_flag="1")),
    ]  # type: ignore[arg-type]
    again = await apply(env.pool, later)
    assert again.applied == 2 and again.suspended == []  # type: ignore[attr-defined]
    assert await _held(env.pool, suspense) == 700
    assert (await balances(env.pool))[closing.account_id] == (0, 0)
    state = await env.pool.fetchval(
        "SELECT state FROM bank_transfer_records WHERE record_id = 'int-s0'"
    )
    assert state == "REVERSED"
    await assert_ledger_invariants(env.pool)
