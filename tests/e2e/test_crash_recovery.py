"""notify-ingest SIGKILLed in the middle of 2,000 notifications: none lost, none posted twice."""

from __future__ import annotations

import asyncio
import random

import pytest
from support.transfers import assert_credited_once, random_credits, records_with_prefix

from e2e.conftest import Stack, wait_until
from fundhub.bank_simulator.notifications import build_many

pytestmark = pytest.mark.slow


async def test_sigkill_mid_stream_loses_nothing_and_posts_once(stack: Stack) -> None:
    accounts = [f"6222001{i:05d}" for i in range(50)]
    specs, expected = random_credits(random.Random(7), "crash-", 2000, accounts, 99999)
    notifications = build_many(specs, stack.env.app_id, stack.env.bank.private_pem)
    sending = asyncio.create_task(stack.bank.send_all(notifications, concurrency=40))

    async def some_applied() -> bool:
        return await records_with_prefix(stack.env.pool, "crash-") >= 300

    await wait_until(some_applied, timeout_s=60, interval_s=0.01)
    stack.ingest.kill()
    at_kill = await records_with_prefix(stack.env.pool, "crash-")
    assert at_kill < 2000, "the kill came too late to prove anything"
    await asyncio.sleep(1.0)  # the gateway keeps accepting while the consumer is down
    stack.ingest.start()
    await stack.ingest.wait_ready()
    report = await sending
    assert report.failed == 0, report

    async def all_applied() -> bool:
        return await records_with_prefix(stack.env.pool, "crash-") == 2000

    await wait_until(all_applied, timeout_s=90)
    await asyncio.sleep(1.0)
    await assert_credited_once(stack.env.pool, "crash-", 2000, expected)
