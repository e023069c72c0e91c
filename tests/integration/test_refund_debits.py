"""Refund debits against real Postgres and the bank simulator's split-refund desk (in-process):
written as the refund's SUCCESS writes them, driven by payment-worker's driver to the bank's
final word; a debit the bank refuses is FAILED E070 and never sent again; a bank out of reach
changes nothing but the next attempt's time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aiohttp
import pytest
from fastapi import FastAPI
from support.env import ModuleEnv
from support.settlement_world import PLATFORM_FEE_ACCOUNT, merchant, paid_order
from support.uvicorn_thread import ThreadedServer

from fundhub.bank_simulator.depository_refund_debits import RefundDebitDesk, refund_debit_router
from fundhub.bank_simulator.depository_splits import SplitDesk
from fundhub.common import db
from fundhub.common.clock import utcnow
from fundhub.orders.refund_debit_driver import RefundDebitDriver
from fundhub.orders.refund_debits import PLATFORM_MEMBER, MemberDebit, RefundDebit
from fundhub.orders.refund_debits_http import HttpRefundDebits
from fundhub.orders.refund_debits_store import debit_writes

KEY = "ak_refund_debits_test"


@dataclass
class Bank:
    desk: RefundDebitDesk
    url: str


@pytest.fixture(scope="module")
def bank() -> Iterator[Bank]:
    desk = RefundDebitDesk(SplitDesk(), delay_s=0.0)
    app = FastAPI()
    app.include_router(refund_debit_router(desk))
    server = ThreadedServer(app)
    try:
        yield Bank(desk, server.url)
    finally:
        server.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def _refunded(env: ModuleEnv, bank: Bank, credited: int, refunded: int) -> RefundDebit:
    """A settled order (its split SUCCESS at the bank: ``credited`` to the merchant, 100 to the
    platform) and a refund after it: its debit row, as the refund's SUCCESS writes it."""
    a = await merchant(env.pool, KEY, "Debit Acme")
    order = await paid_order(env.pool, KEY, [(a, credited)], platform_fee=100)
    settlement_id = f"STL{order.order_id[3:]}"
    now = utcnow()
    split, _ = bank.desk.splits.register(
        {
            "split_request_id": settlement_id,
            "order_no": order.order_no,
            "amount": str(credited + 100),
            "receivers": [
                {"member_id": a.merchant_id, "member_name": a.name, "amount": str(credited)},
                {"member_id": PLATFORM_MEMBER, "member_name": "p", "amount": "100"},
            ],
        },
        now,
    )
    bank.desk.splits.complete(split, now)
    refund_id = f"RFD{order.order_id[3:]}"
    debit = RefundDebit(
        refund_id,
        order.order_id,
        order.order_no,
        settlement_id,
        "CNY",
        (
            MemberDebit(a.merchant_id, a.account_id, refunded),
            MemberDebit(PLATFORM_MEMBER, PLATFORM_FEE_ACCOUNT, 10),
        ),
    )
    async with env.pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO order_refunds (refund_id, order_id, refund_no, fingerprint, amount,"
            " allocation, state, held, source_bucket) VALUES ($1, $2, $1, 'f', $3, $4,"
            " 'SUCCESS', true, 'available')",
            refund_id,
            order.order_id,
            debit.amount,
            [refunded, 10],
        )
        await db.write_together(conn, debit_writes([debit, debit]))  # once, however often
    return debit


async def _row(env: ModuleEnv, refund_id: str) -> dict[str, object]:
    row = await env.pool.fetchrow(
        "SELECT state, error_code, reason, bank_debit_id, finished_at, attempts"
        " FROM order_refund_debits WHERE refund_id = $1",
        refund_id,
    )
    assert row is not None
    return dict(row)


async def _drive(env: ModuleEnv, url: str, session: aiohttp.ClientSession) -> int:
    port = HttpRefundDebits(session, url, timeout_s=1.0, retries=0)
    driver = RefundDebitDriver(env.pool, port, base_s=0.0, max_s=0.0)
    return await driver.drive_once()


async def test_a_debit_is_registered_then_followed_to_success(
    env: ModuleEnv, bank: Bank, session: aiohttp.ClientSession
) -> None:
    debit = await _refunded(env, bank, credited=5_000, refunded=1_200)
    assert (
        await env.pool.fetchval(
            "SELECT count(*) FROM order_refund_debits WHERE refund_id = $1", debit.refund_id
        )
        == 1
    )
    assert await _drive(env, bank.url, session) >= 1  # registered: PROCESSING
    first = await _row(env, debit.refund_id)
    assert first["state"] == "PROCESSING" and first["bank_debit_id"]
    await _drive(env, bank.url, session)  # asked: the bank has done it
    done = await _row(env, debit.refund_id)
    assert (done["state"], done["error_code"]) == ("SUCCESS", None)
    assert done["finished_at"] is not None
    held = bank.desk.debits[debit.refund_id]
    assert held.members() == [(m.member_id, m.amount) for m in debit.members]
    # Final: never claimed again.
    await _drive(env, bank.url, session)
    assert (await _row(env, debit.refund_id))["attempts"] == done["attempts"]


async def test_a_debit_beyond_what_the_split_credited_is_refused_e070_and_left_alone(
    env: ModuleEnv, bank: Bank, session: aiohttp.ClientSession
) -> None:
    debit = await _refunded(env, bank, credited=500, refunded=501)
    await _drive(env, bank.url, session)
    row = await _row(env, debit.refund_id)
    assert (row["state"], row["error_code"]) == ("FAILED", "E070_REFUND_DEBIT_REFUSED")
    assert "more than" in str(row["reason"])
    assert debit.refund_id not in bank.desk.debits
    await _drive(env, bank.url, session)
    assert (await _row(env, debit.refund_id))["attempts"] == row["attempts"]


async def test_a_bank_out_of_reach_only_delays_the_debit(
    env: ModuleEnv, bank: Bank, session: aiohttp.ClientSession
) -> None:
    debit = await _refunded(env, bank, credited=800, refunded=300)
    await _drive(env, "http://127.0.0.1:9", session)  # nobody listens there
    row = await _row(env, debit.refund_id)
    assert (row["state"], row["error_code"], row["attempts"]) == ("PENDING", None, 1)
    await _drive(env, bank.url, session)
    await _drive(env, bank.url, session)
    assert (await _row(env, debit.refund_id))["state"] == "SUCCESS"


async def test_an_id_the_bank_holds_for_another_debit_is_left_for_a_person(
    env: ModuleEnv, bank: Bank, session: aiohttp.ClientSession
) -> None:
    debit = await _refunded(env, bank, credited=900, refunded=400)
    other = {**debit.to_wire(), "amount": "20", "members": [
        {"member_id": PLATFORM_MEMBER, "amount": "20"}]}  # fmt: skip
    bank.desk.register(other, utcnow())  # the bank holds that id for other content
    await _drive(env, bank.url, session)
    row = await _row(env, debit.refund_id)
    # 409: nothing concluded (not refused, not done); it stays due, and alerts.
    assert (row["state"], row["error_code"]) == ("PENDING", None)
    assert bank.desk.debits[debit.refund_id].wire == other
