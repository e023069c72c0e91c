"""notify-ingest's batch handler against real Postgres: inbox dedupe and the ledger's guards."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from support.env import ModuleEnv
from support.ledger import assert_ledger_invariants, balances

from fundhub.bank_simulator.notifications import TransferSpec, biz_content
from fundhub.bank_transfers.apply import apply_transfer_notifications
from fundhub.bank_transfers.messages import TransferMessage
from fundhub.bank_transfers.notification import notification_message_id, parse_transfer_biz_content
from fundhub.common.clock import utcnow
from fundhub.common.topics import Topics

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
        return await apply_transfer_notifications(conn, TOPICS, messages)


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
