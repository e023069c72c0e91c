"""Settlement against real Postgres and the bank's split desk (the simulator, in-process).

The scheduler takes due orders and drives their instructions; the depository's signed results
are applied as payment-worker's consumer applies them (the gateway's envelope, the inbox);
every test ends with the ledger's invariants.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import aiohttp
import httpx
import orjson
import pytest
from support.env import ModuleEnv
from support.ledger import assert_ledger_invariants
from support.receivers import ThreadedReceiver
from support.settlement_world import (
    PLATFORM_FEE_ACCOUNT,
    Merchant,
    buckets,
    merchant,
    paid_order,
    pending_refund,
    refund_before_settlement,
)
from support.uvicorn_thread import ThreadedServer

from fundhub.access.store import NonceReplayed
from fundhub.bank_simulator.app import create_app
from fundhub.bank_simulator.config import SimulatorConfig
from fundhub.bank_simulator.payouts_bank import PayoutBehaviour
from fundhub.bank_transfers.notification import notification_message_id
from fundhub.common import db
from fundhub.common.clock import utcnow
from fundhub.common.config import Settings
from fundhub.common.envelope import Envelope
from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.common.topics import topics
from fundhub.settlement import seams
from fundhub.settlement.confirm import Confirmation, Confirmations, Confirmed, confirm_many
from fundhub.settlement.depository import SPLIT_RESULTS_METHOD
from fundhub.settlement.depository_http import HttpDepository
from fundhub.settlement.messages import TYPE_SPLIT_RESULT, decode_split_result
from fundhub.settlement.results import apply_split_results
from fundhub.settlement.scheduler import Scheduler

KEY = "ak_settlement_test"
YESTERDAY = timedelta(days=1, hours=2)  # always before the last cut-off's boundary


class Results(ThreadedReceiver):
    """Where the bank sends its signed split results (the gateway's place): kept as received."""

    def __init__(self) -> None:
        self.notices: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        super().__init__("/callbacks/bank")

    def answer(self, path: str, params: dict[str, Any]) -> str:
        with self.lock:
            self.notices.append(params)
        return "success"

    def take(self) -> list[dict[str, Any]]:
        with self.lock:
            taken, self.notices = self.notices, []
        return taken


@pytest.fixture(scope="module")
def results() -> Iterator[Results]:
    receiver = Results()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def bank(env: ModuleEnv) -> Iterator[str]:
    config = SimulatorConfig(
        gateway_url="http://127.0.0.1:9",
        private_key_pem=env.bank.private_pem,
        app_id=env.app_id,
        retries=0,
        timeout_s=2.0,
    )
    server = ThreadedServer(create_app(config, PayoutBehaviour(seed=1)))
    yield server.url
    server.stop()


async def behave(bank: str, **changes: Any) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        answer = await client.post(f"{bank}/depository/v1/split-desk/behaviour", json=changes)
        assert answer.status_code == 200, answer.text
        stats: dict[str, Any] = (await client.get(f"{bank}/depository/v1/split-desk/stats")).json()
        return stats


def settings_for(env: ModuleEnv, results: Results, **changes: Any) -> Settings:
    return env.settings.model_copy(
        update={
            "payout_notify_url": results.url,
            "settlement_poll_base_s": 0.05,
            "settlement_poll_max_s": 0.2,
            **changes,
        }
    )


@pytest.fixture
async def scheduler(env: ModuleEnv, bank: str, results: Results) -> AsyncIterator[Scheduler]:
    async with aiohttp.ClientSession() as session:
        depository = HttpDepository(session, bank, timeout_s=2.0, retries=1, backoff_s=0.01)
        yield Scheduler(settings_for(env, results), env.pool, topics(env.settings), depository)


def singly(notices: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each result as its own notification, as the gateway publishes a batch's results (each
    item under its own ``biz_content``)."""
    single: list[dict[str, Any]] = []
    for params in notices:
        if params["method"] != SPLIT_RESULTS_METHOD:
            single.append(params)
            continue
        for item in json.loads(params["biz_content"])["results"]:
            single.append({**params, "biz_content": orjson.dumps(item).decode()})
    return single


async def deliver(env: ModuleEnv, notices: list[dict[str, Any]]) -> None:
    """The bank's notifications as the gateway publishes them, through the consumer's code."""
    messages = []
    for params in singly(notices):
        envelope = Envelope(
            id=notification_message_id(params["app_id"], params["biz_content"]),
            type=TYPE_SPLIT_RESULT,
            correlation_id="test",
            data={"appId": params["app_id"], "params": params},
        )
        messages.append(decode_split_result(envelope.to_bytes()))
    async with env.pool.acquire() as conn, conn.transaction():
        await apply_split_results(conn, topics(env.settings), messages)


async def wait_for_notices(results: Results, count: int) -> list[dict[str, Any]]:
    """The notifications carrying ``count`` results (a batch counts for each of its own)."""
    taken: list[dict[str, Any]] = []
    for _ in range(200):
        taken += results.take()
        if len(singly(taken)) >= count:
            return taken
        await asyncio.sleep(0.05)
    raise AssertionError(f"{len(taken)} of {count} split results arrived")


async def settlement_of(env: ModuleEnv, order_id: str) -> dict[str, Any]:
    rows = await env.pool.fetch(
        "SELECT * FROM settlements WHERE order_id = $1 ORDER BY created_at", order_id
    )
    assert len(rows) == 1, rows
    return dict(rows[0])


async def receivers(env: ModuleEnv, *names: str) -> list[Merchant]:
    return [await merchant(env.pool, KEY, name) for name in names]


async def test_a_due_order_settles_once_net_of_refunds_in_one_balanced_entry(
    env: ModuleEnv, scheduler: Scheduler, bank: str, results: Results
) -> None:
    await behave(bank, delayS=0.05, notify=True)
    a, b = await receivers(env, "Acme Ltd", "Beta Co")
    order = await paid_order(
        env.pool, KEY, [(a, 6000), (b, 3000)], platform_fee=1000, paid_at=utcnow() - YESTERDAY
    )
    await refund_before_settlement(env.pool, order, [1200, 600, 200])
    fee_before = await buckets(env.pool, PLATFORM_FEE_ACCOUNT)

    assert await scheduler.schedule_due(utcnow()) >= 1
    assert await scheduler.drive_due() >= 1
    row = await settlement_of(env, order.order_id)
    assert (row["state"], row["trigger"], row["amount"]) == ("PROCESSING", "SCHEDULED", 8000)
    # Not settled until the bank confirms: the money is still pending, and refunds wait.
    assert await buckets(env.pool, a.account_id) == (0, 0, 4800)
    settling = "SELECT settling_id FROM orders WHERE order_id = $1"
    assert await env.pool.fetchval(settling, order.order_id) == row["settlement_id"]

    notices = await wait_for_notices(results, 1)
    await deliver(env, notices)
    await deliver(env, notices)  # the bank's retry of the same notification: nothing more
    row = await settlement_of(env, order.order_id)
    assert row["state"] == "SETTLED" and row["bank_split_id"]
    assert await buckets(env.pool, a.account_id) == (4800, 0, 0)
    assert await buckets(env.pool, b.account_id) == (2400, 0, 0)
    fee_after = await buckets(env.pool, PLATFORM_FEE_ACCOUNT)
    assert fee_after[0] - fee_before[0] == 800 and fee_before[2] - fee_after[2] == 800
    entries = await env.pool.fetch(
        "SELECT entry_id FROM journal_entries WHERE ref_type = 'settlement' AND ref_id = $1",
        row["settlement_id"],
    )
    assert len(entries) == 1
    settled_at = await env.pool.fetchval(
        "SELECT settled_at FROM orders WHERE order_id = $1", order.order_id
    )
    assert settled_at is not None
    await assert_ledger_invariants(env.pool)


async def test_orders_paid_today_wait_for_tomorrows_cutoff(
    env: ModuleEnv, scheduler: Scheduler
) -> None:
    (a,) = await receivers(env, "Today Ltd")
    order = await paid_order(env.pool, KEY, [(a, 500)], paid_at=utcnow())
    await scheduler.schedule_due(utcnow())
    count = await env.pool.fetchval(
        "SELECT count(*) FROM settlements WHERE order_id = $1", order.order_id
    )
    assert count == 0
    # At its due time (a day and a cut-off later) it is taken.
    await scheduler.schedule_due(utcnow() + timedelta(days=2))
    assert (await settlement_of(env, order.order_id))["state"] == "PENDING"


async def test_a_refused_split_leaves_the_money_pending_with_the_banks_reason(
    env: ModuleEnv, scheduler: Scheduler, bank: str, results: Results
) -> None:
    await behave(bank, delayS=0.05, notify=True)
    a, b = await receivers(env, "Gamma Ltd", "SPLITFAIL Widgets")
    order = await paid_order(env.pool, KEY, [(a, 700), (b, 300)], paid_at=utcnow() - YESTERDAY)
    await scheduler.schedule_due(utcnow())
    await scheduler.drive_due()
    await deliver(env, await wait_for_notices(results, 1))
    row = await settlement_of(env, order.order_id)
    assert (row["state"], row["error_code"]) == ("REFUSED", "E043_SPLIT_REFUSED")
    assert "SPLITFAIL Widgets" in row["message"] and "may not receive splits" in row["message"]
    assert await buckets(env.pool, a.account_id) == (0, 0, 700)
    assert await buckets(env.pool, b.account_id) == (0, 0, 300)
    marks = await env.pool.fetchrow(
        "SELECT settled_at, settling_id FROM orders WHERE order_id = $1", order.order_id
    )
    assert tuple(marks) == (None, None)  # refunds may take from pending again
    # The scheduler does not try a refused order again by itself.
    await scheduler.schedule_due(utcnow())
    await settlement_of(env, order.order_id)
    await assert_ledger_invariants(env.pool)


async def test_without_a_notification_polling_finds_the_result(
    env: ModuleEnv, scheduler: Scheduler, bank: str
) -> None:
    await behave(bank, delayS=0.0, notify=False)
    (a,) = await receivers(env, "Quiet Bank Customer")
    order = await paid_order(env.pool, KEY, [(a, 900)], paid_at=utcnow() - YESTERDAY)
    await scheduler.schedule_due(utcnow())
    for _ in range(100):
        await scheduler.drive_due()
        if (await settlement_of(env, order.order_id))["state"] == "SETTLED":
            break
        await asyncio.sleep(0.05)
    assert (await settlement_of(env, order.order_id))["state"] == "SETTLED"
    assert await buckets(env.pool, a.account_id) == (900, 0, 0)
    await behave(bank, notify=True)


async def test_a_batch_of_answers_settles_and_refuses_together(
    env: ModuleEnv, scheduler: Scheduler, bank: str
) -> None:
    """The answers to one drive are applied in one transaction (they share the platform fee's
    balance): a refusal among them moves its own settlement only."""
    await behave(bank, delayS=0.0, notify=False)
    a, b, refusing = await receivers(env, "Batch One", "Batch Two", "SPLITFAIL Batch")
    orders = [
        await paid_order(env.pool, KEY, [(a, 100 + i), (b, 50)], platform_fee=7,
                         paid_at=utcnow() - YESTERDAY)
        for i in range(4)
    ]  # fmt: skip
    refused = await paid_order(
        env.pool, KEY, [(a, 10), (refusing, 20)], platform_fee=3, paid_at=utcnow() - YESTERDAY
    )
    fee_before = await buckets(env.pool, PLATFORM_FEE_ACCOUNT)
    await scheduler.schedule_due(utcnow())
    for _ in range(100):
        await scheduler.drive_due()
        states = [(await settlement_of(env, o.order_id))["state"] for o in [*orders, refused]]
        if all(state in ("SETTLED", "REFUSED") for state in states):
            break
        await asyncio.sleep(0.05)
    assert states == ["SETTLED"] * 4 + ["REFUSED"]
    assert await buckets(env.pool, a.account_id) == (sum(100 + i for i in range(4)), 0, 10)
    assert await buckets(env.pool, b.account_id) == (200, 0, 0)
    assert await buckets(env.pool, refusing.account_id) == (0, 0, 20)
    fee_after = await buckets(env.pool, PLATFORM_FEE_ACCOUNT)
    assert (fee_after[0] - fee_before[0], fee_after[2] - fee_before[2]) == (28, -28)
    await behave(bank, notify=True)
    await assert_ledger_invariants(env.pool)


async def test_a_fully_refunded_order_has_nothing_to_settle_and_is_marked_so(
    env: ModuleEnv, scheduler: Scheduler
) -> None:
    (a,) = await receivers(env, "Refunded Co")
    order = await paid_order(env.pool, KEY, [(a, 400)], paid_at=utcnow() - YESTERDAY)
    await refund_before_settlement(env.pool, order, [400])
    await scheduler.schedule_due(utcnow())
    assert (
        await env.pool.fetchval(
            "SELECT count(*) FROM settlements WHERE order_id = $1", order.order_id
        )
        == 0
    )
    assert (
        await env.pool.fetchval("SELECT settled_at FROM orders WHERE order_id = $1", order.order_id)
        is not None
    )


async def test_an_order_with_a_refund_not_yet_held_waits(
    env: ModuleEnv, scheduler: Scheduler
) -> None:
    (a,) = await receivers(env, "Waiting Co")
    order = await paid_order(env.pool, KEY, [(a, 400)], paid_at=utcnow() - YESTERDAY)
    refund_id = await pending_refund(env.pool, order, 100)
    await scheduler.schedule_due(utcnow())
    assert (
        await env.pool.fetchval(
            "SELECT count(*) FROM settlements WHERE order_id = $1", order.order_id
        )
        == 0
    )
    await env.pool.execute(
        "UPDATE order_refunds SET state = 'FAILED' WHERE refund_id = $1", refund_id
    )
    await scheduler.schedule_due(utcnow())
    assert (await settlement_of(env, order.order_id))["amount"] == 400


async def test_two_schedulers_at_once_settle_every_order_exactly_once(
    env: ModuleEnv, scheduler: Scheduler, bank: str, results: Results
) -> None:
    """Two replicas (own pools, own sessions) over 200 due orders: each order one settlement,
    one registration at the bank, one entry; nothing moved twice."""
    await behave(bank, delayS=0.0, notify=False)
    for _ in range(100):  # what earlier tests left under way ends first: the counts are ours
        await scheduler.drive_due()
        if not await env.pool.fetchval(
            "SELECT count(*) FROM settlements WHERE state IN ('PENDING', 'PROCESSING')"
        ):
            break
        await asyncio.sleep(0.05)
    before = await behave(bank)
    merchants = await receivers(env, "Twin A", "Twin B", "Twin C")
    orders = [
        await paid_order(
            env.pool,
            KEY,
            [(merchants[i % 3], 100 + i), (merchants[(i + 1) % 3], 50)],
            platform_fee=10,
            paid_at=utcnow() - YESTERDAY - timedelta(seconds=i),
        )
        for i in range(200)
    ]
    pending_before = {m.account_id: (await buckets(env.pool, m.account_id))[2] for m in merchants}

    async def replica() -> None:
        pool = await db.connect_pool(env.settings.database_url, max_size=4)
        try:
            async with aiohttp.ClientSession() as session:
                depository = HttpDepository(session, bank, timeout_s=5.0, retries=1)
                runner = Scheduler(
                    settings_for(env, results, settlement_poll_base_s=1.0),
                    pool,
                    topics(env.settings),
                    depository,
                )
                for _ in range(300):
                    await runner.schedule_due(utcnow())
                    await runner.drive_due()
                    left = await pool.fetchval(
                        "SELECT count(*) FROM orders WHERE order_id = ANY($1::text[])"
                        " AND settled_at IS NULL",
                        [o.order_id for o in orders],
                    )
                    if left == 0:
                        return
                    await asyncio.sleep(0.05)
                raise AssertionError(f"{left} orders left unsettled")
        finally:
            await pool.close()

    await asyncio.gather(replica(), replica())
    ids = [o.order_id for o in orders]
    per_order = await env.pool.fetch(
        "SELECT order_id, count(*) AS n, min(state) AS state FROM settlements"
        " WHERE order_id = ANY($1::text[]) GROUP BY order_id",
        ids,
    )
    assert len(per_order) == 200
    assert all(r["n"] == 1 and r["state"] == "SETTLED" for r in per_order)
    entries = await env.pool.fetchval(
        "SELECT count(*) FROM journal_entries e JOIN settlements s"
        " ON e.ref_type = 'settlement' AND e.ref_id = s.settlement_id"
        " WHERE s.order_id = ANY($1::text[])",
        ids,
    )
    assert entries == 200
    after = await behave(bank)
    assert after["registrations"] - before["registrations"] == 200
    for m in merchants:
        moved = pending_before[m.account_id] - (await buckets(env.pool, m.account_id))[2]
        expected = sum(amount for o in orders for mid, _, amount in o.parts if mid == m.merchant_id)
        assert moved == expected
    await assert_ledger_invariants(env.pool)
    await behave(bank, notify=True)


async def test_a_result_signed_by_another_app_moves_nothing(
    env: ModuleEnv, scheduler: Scheduler, bank: str, results: Results
) -> None:
    await behave(bank, delayS=0.05, notify=True)
    (a,) = await receivers(env, "Foreign App Co")
    order = await paid_order(env.pool, KEY, [(a, 250)], paid_at=utcnow() - YESTERDAY)
    await scheduler.schedule_due(utcnow())
    await scheduler.drive_due()
    notices = await wait_for_notices(results, 1)
    forged = [{**params, "app_id": "another-app"} for params in notices]
    await deliver(env, forged)
    assert (await settlement_of(env, order.order_id))["state"] == "PROCESSING"
    await deliver(env, notices)
    assert (await settlement_of(env, order.order_id))["state"] == "SETTLED"


async def test_seams_read_the_order_as_settlement_needs_it(env: ModuleEnv) -> None:
    a, b = await receivers(env, "Seam A", "Seam B")
    order = await paid_order(env.pool, KEY, [(a, 300), (b, 200)], platform_fee=50)
    await refund_before_settlement(env.pool, order, [30, 20, 5], state="PROCESSING")
    async with env.pool.acquire() as conn, conn.transaction():
        locked = await seams.lock_order(conn, KEY, order.order_no)
        other_tenant = await seams.lock_order(conn, "ak_someone_else", order.order_no)
    assert other_tenant is None
    assert locked is not None and locked.paid and not locked.settled
    assert [(s.merchant_id, s.split, s.refunded) for s in locked.shares] == [
        (a.merchant_id, 300, 30),
        (b.merchant_id, 200, 20),
        (None, 50, 5),
    ]
    names = json.dumps(await seams.member_names(env.pool, [a.merchant_id]))  # type: ignore[arg-type]
    assert "Seam A" in names


async def test_confirmations_together_share_a_transaction_and_keep_their_own_outcomes(
    env: ModuleEnv,
) -> None:
    """Paid, not paid, another tenant's, under way already and unknown, in one batch: each
    answered as it would be alone, and the new settlement recorded once."""
    a, b = await receivers(env, "Confirm A", "Confirm B")
    fresh = await paid_order(env.pool, KEY, [(a, 500), (b, 300)], platform_fee=20)
    under_way = await paid_order(env.pool, KEY, [(a, 70)])
    (before,) = await confirm_many(env.pool, [Confirmation(KEY, under_way.order_no)], "app")
    assert not isinstance(before, FundhubError) and before.created
    unpaid = await paid_order(env.pool, KEY, [(b, 40)])
    await env.pool.execute(
        "UPDATE orders SET state = 'CREATED' WHERE order_id = $1", unpaid.order_id
    )
    outcomes = await confirm_many(
        env.pool,
        [
            Confirmation(KEY, fresh.order_no),
            Confirmation(KEY, unpaid.order_no),
            Confirmation("ak_someone_else", fresh.order_no),
            Confirmation(KEY, under_way.order_no),
            Confirmation(KEY, "no-such-order"),
        ],
        "app",
    )
    created, not_paid, foreign, again, missing = outcomes
    assert not isinstance(created, FundhubError) and created.created
    assert created.row["amount"] == 820 and created.row["state"] == "PENDING"
    assert isinstance(not_paid, FundhubError) and not_paid.error is ErrorCode.ORDER_NOT_PAID
    assert isinstance(foreign, FundhubError) and foreign.error is ErrorCode.NOT_FOUND
    assert isinstance(missing, FundhubError) and missing.error is ErrorCode.NOT_FOUND
    assert not isinstance(again, FundhubError) and not again.created
    assert again.row["settlement_id"] == before.row["settlement_id"]
    assert (await settlement_of(env, fresh.order_id))["settlement_id"] == created.row[
        "settlement_id"
    ]
    settling = "SELECT settling_id FROM orders WHERE order_id = $1"
    assert await env.pool.fetchval(settling, fresh.order_id) == created.row["settlement_id"]


async def test_a_confirmations_nonce_is_recorded_with_it_and_a_replay_changes_nothing(
    env: ModuleEnv,
) -> None:
    (a,) = await receivers(env, "Confirm Nonce")
    first, second, third = [await paid_order(env.pool, KEY, [(a, 30 + i)]) for i in range(3)]
    await env.pool.execute(
        "INSERT INTO api_nonces (key_id, nonce) VALUES ($1, 'nonce-used-before-0001')", KEY
    )
    outcomes = await confirm_many(
        env.pool,
        [
            Confirmation(KEY, first.order_no, "nonce-fresh-000000001"),
            Confirmation(KEY, second.order_no, "nonce-used-before-0001"),
            Confirmation(KEY, third.order_no, "nonce-fresh-000000001"),  # twice in the batch
        ],
        "app",
    )
    assert isinstance(outcomes[0], Confirmed) and outcomes[0].created
    assert isinstance(outcomes[1], NonceReplayed) and isinstance(outcomes[2], NonceReplayed)
    count = "SELECT count(*) FROM settlements WHERE order_id = $1"
    assert [await env.pool.fetchval(count, o.order_id) for o in (first, second, third)] == [1, 0, 0]
    recorded = "SELECT count(*) FROM api_nonces WHERE key_id = $1 AND nonce = $2"
    assert await env.pool.fetchval(recorded, KEY, "nonce-fresh-000000001") == 1


async def test_concurrent_confirmations_of_one_order_make_one_settlement(env: ModuleEnv) -> None:
    (a,) = await receivers(env, "Confirm Twice")
    orders = [await paid_order(env.pool, KEY, [(a, 10 + i)]) for i in range(5)]
    confirmations = Confirmations(env.pool, "app", max_batch=50)
    answers = await asyncio.gather(
        *(confirmations.confirm(KEY, o.order_no) for o in orders for _ in range(3))
    )
    for order in orders:
        ids = {c.row["settlement_id"] for c in answers if c.row["order_id"] == order.order_id}
        assert len(ids) == 1
        assert sum(c.created for c in answers if c.row["order_id"] == order.order_id) == 1
        assert (await settlement_of(env, order.order_id))["settlement_id"] in ids
