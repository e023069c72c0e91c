"""notify-ingest SIGKILLed in the middle of 2,000 notifications: none lost, none posted twice."""

from __future__ import annotations

import asyncio
import random

import pytest
from support.ledger import assert_ledger_invariants, balances

from e2e.conftest import Stack, wait_until
from fundhub.bank_simulator.notifications import TransferSpec, build_many

pytestmark = pytest.mark.slow


async def test_sigkill_mid_stream_loses_nothing_and_posts_once(stack: Stack) -> None:
    rng = random.Random(7)
    accounts = [f"6222001{i:05d}" for i in range(50)]
    specs = [
        TransferSpec(
            record_id=f"crash-{i}",
            in_acct_no=rng.choice(accounts),
            trans_amount=rng.randint(1, 99999),
        )
        for i in range(2000)
    ]
    expected: dict[str, int] = {}
    for spec in specs:
        expected[spec.in_acct_no] = expected.get(spec.in_acct_no, 0) + spec.trans_amount
    notifications = build_many(specs, stack.env.app_id, stack.env.bank.private_pem)
    sending = asyncio.create_task(stack.bank.send_all(notifications, concurrency=40))

    async def some_applied() -> bool:
        n = await stack.env.pool.fetchval(
            "SELECT count(*) FROM bank_transfer_records WHERE record_id LIKE 'crash-%'"
        )
        return bool(n >= 300)

    await wait_until(some_applied, timeout_s=60, interval_s=0.01)
    stack.ingest.kill()
    at_kill = await stack.env.pool.fetchval(
        "SELECT count(*) FROM bank_transfer_records WHERE record_id LIKE 'crash-%'"
    )
    assert at_kill < 2000, "the kill came too late to prove anything"
    await asyncio.sleep(1.0)  # the gateway keeps accepting while the consumer is down
    stack.ingest.start()
    await stack.ingest.wait_ready()
    report = await sending
    assert report.failed == 0, report

    async def all_applied() -> bool:
        n = await stack.env.pool.fetchval(
            "SELECT count(*) FROM bank_transfer_records WHERE record_id LIKE 'crash-%'"
        )
        return bool(n == 2000)

    await wait_until(all_applied, timeout_s=90)
    await asyncio.sleep(1.0)
    found = await balances(stack.env.pool)
    for account, total in expected.items():
        assert found[account] == (total, 0), account
    entries = await stack.env.pool.fetchval(
        "SELECT count(*) FROM journal_entries WHERE ref_id LIKE 'crash-%'"
    )
    assert entries == 2000
    await assert_ledger_invariants(stack.env.pool)
