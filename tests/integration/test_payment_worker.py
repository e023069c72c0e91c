"""payment-worker's handlers against real Postgres, with a scripted bank in place of HTTP."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest
from support.env import ModuleEnv
from support.ledger import assert_ledger_invariants, balances

from fundhub.common import db
from fundhub.common.topics import topics
from fundhub.ledger import store as ledger_store
from fundhub.ledger.rules import BANK_INFLOW, JournalEntry, credit, new_entry_id, system_account
from fundhub.payouts import commands, results, store
from fundhub.payouts.bank import (
    BankAnswer,
    BankRequestRefused,
    BankStatus,
    BankUnavailable,
    PayoutOrder,
)
from fundhub.payouts.bank_results import BankResult
from fundhub.payouts.messages import PayoutCommand, ResultMessage
from fundhub.payouts.poller import Poller
from fundhub.payouts.submitter import Submitter

CLEARING = system_account("bank-payout-clearing", "CNY")


class ScriptedBank:
    """Answers from a script; records what it was asked.

    A batch answers each order as ``submit`` would, a refusal in its place; an order scripted
    to go unanswered leaves the whole batch unanswered, as would ``on_batch``.
    """

    def __init__(self) -> None:
        self.submitted: list[str] = []
        self.queried: list[str] = []
        self.batches: list[list[str]] = []
        self.on_submit: dict[str, BankAnswer | Exception] = {}
        self.on_query: dict[str, BankAnswer | Exception | None] = {}
        self.on_batch: Exception | None = None

    async def submit_many(
        self, orders: Sequence[PayoutOrder]
    ) -> list[BankAnswer | BankRequestRefused]:
        self.batches.append([order.bank_request_id for order in orders])
        if self.on_batch is not None:
            raise self.on_batch
        outcomes: list[BankAnswer | BankRequestRefused] = []
        for order in orders:
            try:
                outcomes.append(await self.submit(order))
            except BankRequestRefused as exc:
                outcomes.append(exc)
        return outcomes

    async def submit(self, order: PayoutOrder) -> BankAnswer:
        self.submitted.append(order.bank_request_id)
        answer = self.on_submit.get(
            order.bank_request_id, BankAnswer(BankStatus.PROCESSING, "BTX" + order.bank_request_id)
        )
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def query(self, bank_request_id: str) -> BankAnswer | None:
        self.queried.append(bank_request_id)
        answer = self.on_query.get(bank_request_id)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def fund(pool: asyncpg.Pool, account: str, amount: int) -> None:
    inflow = system_account(BANK_INFLOW, "CNY")
    entry = JournalEntry(
        new_entry_id(), "test", "test", account, credit(account, "CNY", amount, source=inflow)
    )
    async with pool.acquire() as conn, conn.transaction():
        await ledger_store.ensure_accounts(conn, [(account, "CNY", None)], [inflow])
        now = await ledger_store.lock_balances(conn, [account])
        after = now[account].available + amount
        await db.write_together(
            conn,
            [
                *ledger_store.entry_writes([entry], [None]),
                *ledger_store.balance_writes([type(now[account])(account, "CNY", after)]),
            ],
        )


async def insert_payout(pool: asyncpg.Pool, payer: str, amount: int) -> str:
    pay_id = f"PAY{uuid.uuid4().hex[:16]}"
    await pool.execute(
        "INSERT INTO payouts (pay_id, key_id, request_id, supplier_id, payer_account_id, amount, "
        "currency, payee, callback_url) VALUES ($1, 'k1', $1, 'S1', $2, $3, 'CNY', $4::jsonb, "
        "'https://client.example/cb')",
        pay_id,
        payer,
        amount,
        {"accountName": "Supplier", "accountNo": "6222000011112222", "bankName": "Bank"},
    )
    return pay_id


async def accept(env: ModuleEnv, pay_ids: list[str]) -> commands.Accepted:
    messages = [PayoutCommand(str(uuid.uuid4()), "test", p) for p in pay_ids]
    async with env.pool.acquire() as conn, conn.transaction():
        return await commands.accept_payouts(conn, topics(env.settings), env.settings, messages)


async def report(
    env: ModuleEnv, pay_id: str, amount: int, status: str, msg_id: str = "", app_id: str = ""
) -> Any:
    result = BankResult(
        status=BankStatus(status), bank_txn_id="BTX" + pay_id, amount=amount, bank_request_id=pay_id
    )
    app = app_id or env.settings.bank_app_id
    message = ResultMessage(msg_id or str(uuid.uuid4()), "test", pay_id, result, app)
    async with env.pool.acquire() as conn, conn.transaction():
        return await results.apply_bank_results(
            conn, topics(env.settings), [message], env.settings.bank_app_id
        )


async def state(pool: asyncpg.Pool, pay_id: str) -> tuple[str, str | None]:
    row = await pool.fetchrow("SELECT state, error_code FROM payouts WHERE pay_id = $1", pay_id)
    assert row is not None
    return row["state"], row["error_code"]


async def test_accept_freezes_what_fits_in_order_and_fails_the_rest(env: ModuleEnv) -> None:
    await fund(env.pool, "acct-fit", 2_500)
    pay_ids = [await insert_payout(env.pool, "acct-fit", 1_000) for _ in range(3)]
    unknown = await insert_payout(env.pool, "acct-nobody", 1_000)
    accepted = await accept(env, [*pay_ids, unknown])
    assert [r["pay_id"] for r in accepted.to_submit] == pay_ids[:2]
    assert await state(env.pool, pay_ids[2]) == ("FAILED", "E004_INSUFFICIENT_FUNDS")
    assert await state(env.pool, unknown) == ("FAILED", "E001")
    assert (await balances(env.pool))["acct-fit"] == (500, 2_000)
    # A re-delivered command (a crash before the offset commit) changes nothing.
    again = await accept(env, pay_ids)
    assert again.to_submit == [] and again.duplicates == 3
    assert (await balances(env.pool))["acct-fit"] == (500, 2_000)
    await assert_ledger_invariants(env.pool)


async def test_results_settle_once_and_ignore_stale_and_contradicting(env: ModuleEnv) -> None:
    await fund(env.pool, "acct-res", 10_000)
    paid, failed = [await insert_payout(env.pool, "acct-res", 1_000) for _ in range(2)]
    await accept(env, [paid, failed])
    settled = await report(env, paid, 1_000, "SUCCESS", "m-1")
    assert settled.applied == 1
    assert (await report(env, paid, 1_000, "SUCCESS", "m-1")).duplicates == 1  # same message
    assert (await report(env, paid, 1_000, "SUCCESS")).ignored == 1  # same fact, other message
    assert (await report(env, paid, 1_000, "FAILED")).ignored == 1  # contradicts: alert only
    assert (await report(env, paid, 999, "RETURNED")).ignored == 1  # another amount: rejected
    assert await state(env.pool, paid) == ("SUCCESS", None)
    await report(env, failed, 1_000, "FAILED")
    assert (await balances(env.pool))["acct-res"] == (9_000, 0)
    await report(env, paid, 1_000, "RETURNED")
    assert await state(env.pool, paid) == ("RETURNED", "E014_RETURNED")
    assert (await balances(env.pool))["acct-res"] == (10_000, 0)
    clearing = await env.pool.fetchval(
        "SELECT coalesce(sum(amount), 0) FROM postings WHERE account_id = $1", CLEARING
    )
    assert clearing == 0
    callbacks = await env.pool.fetch(
        "SELECT key FROM outbox WHERE topic = $1 AND key = ANY($2::text[])",
        topics(env.settings).client_callbacks,
        [paid, failed],
    )
    assert sorted(r["key"] for r in callbacks) == sorted([paid, paid, failed])
    await assert_ledger_invariants(env.pool)


async def test_a_result_counts_only_from_the_bank_app_the_payout_went_through(
    env: ModuleEnv,
) -> None:
    """Defect 1 of issue 9: another registered app's signed RETURNED moved a paid payout."""
    await fund(env.pool, "acct-app", 5_000)
    pay_id = await insert_payout(env.pool, "acct-app", 1_000)
    await accept(env, [pay_id])
    recorded = await env.pool.fetchval("SELECT bank_app_id FROM payouts WHERE pay_id = $1", pay_id)
    assert recorded == env.settings.bank_app_id
    assert (await report(env, pay_id, 1_000, "SUCCESS")).applied == 1
    other = "20990101000000000000000001"
    assert (await report(env, pay_id, 1_000, "RETURNED", app_id=other)).ignored == 1
    assert await state(env.pool, pay_id) == ("SUCCESS", None)
    assert (await balances(env.pool))["acct-app"] == (4_000, 0)
    await assert_ledger_invariants(env.pool)


async def test_submit_answers_and_poller_resubmits_what_the_bank_never_got(
    env: ModuleEnv,
) -> None:
    await fund(env.pool, "acct-poll", 10_000)
    ok, lost, silent = [await insert_payout(env.pool, "acct-poll", 1_000) for _ in range(3)]
    accepted = await accept(env, [ok, lost, silent])
    bank = ScriptedBank()
    bank.on_submit[ok] = BankAnswer(BankStatus.SUCCESS, "BTX1")
    bank.on_submit[lost] = BankUnavailable("no answer")
    bank.on_submit[silent] = BankUnavailable("no answer")
    submitter = Submitter(env.pool, topics(env.settings), bank, "http://gw/callbacks/bank")
    for row in accepted.to_submit:
        await submitter.submit(row)
    assert await state(env.pool, ok) == ("SUCCESS", None)
    assert await state(env.pool, lost) == ("PROCESSING", None)  # no answer is not a failure

    settings = env.settings.model_copy(
        update={"payout_poll_base_s": 0.0, "payout_result_deadline_s": 0}
    )
    await env.pool.execute(
        "UPDATE payouts SET next_poll_at = now(), deadline_at = now() - interval '1 second' "
        "WHERE pay_id = ANY($1::text[])",
        [lost, silent],
    )
    bank.on_query[lost] = None  # never received: send it again under the same id
    bank.on_query[silent] = BankUnavailable("still nothing")
    bank.on_submit[lost] = BankAnswer(BankStatus.FAILED, "BTX2", "payee account closed")
    looked = await Poller(settings, env.pool, submitter).poll_once()
    assert looked == 2
    assert bank.submitted.count(lost) == 2
    assert await state(env.pool, lost) == ("FAILED", "E016_PAYEE_INVALID")
    assert await state(env.pool, silent) == ("PROCESSING", None)  # never guessed
    alerted = await env.pool.fetchval("SELECT alerted_at FROM payouts WHERE pay_id = $1", silent)
    assert alerted is not None
    assert (await balances(env.pool))["acct-poll"] == (8_000, 1_000)
    await assert_ledger_invariants(env.pool)


async def test_a_processing_answer_is_noted_without_moving_money(env: ModuleEnv) -> None:
    """The usual answer to a submission: submitted_at and the bank's id, nothing else; an id
    that disagrees with the one recorded goes the full way and raises its alert."""
    await fund(env.pool, "acct-noted", 5_000)
    plain, raced, disagreeing = [
        await insert_payout(env.pool, "acct-noted", 1_000) for _ in range(3)
    ]
    accepted = await accept(env, [plain, raced, disagreeing])
    await report(env, raced, 1_000, "SUCCESS")  # its callback came before the answer
    await env.pool.execute(
        "UPDATE payouts SET bank_txn_id = 'BTX-first' WHERE pay_id = $1", disagreeing
    )
    bank = ScriptedBank()
    bank.on_submit[disagreeing] = BankAnswer(BankStatus.PROCESSING, "BTX-other")
    submitter = Submitter(env.pool, topics(env.settings), bank, "http://gw/callbacks/bank")
    for row in accepted.to_submit:
        await submitter.submit(row)
    rows = {
        r["pay_id"]: r
        for r in await env.pool.fetch(
            "SELECT pay_id, state, bank_txn_id, submitted_at FROM payouts "
            "WHERE pay_id = ANY($1::text[])",
            [plain, raced, disagreeing],
        )
    }
    assert (rows[plain]["state"], rows[plain]["bank_txn_id"]) == ("PROCESSING", "BTX" + plain)
    assert rows[plain]["submitted_at"] is not None
    assert rows[raced]["state"] == "SUCCESS"  # the late PROCESSING answer changes nothing
    assert rows[raced]["submitted_at"] is not None
    assert (rows[disagreeing]["state"], rows[disagreeing]["bank_txn_id"]) == (
        "PROCESSING",
        "BTX-first",
    )
    assert rows[disagreeing]["submitted_at"] is not None  # the bank has it, whatever its id
    # 5,000 funded; raced paid 1,000; the other two still frozen.
    assert (await balances(env.pool))["acct-noted"] == (2_000, 2_000)
    await assert_ledger_invariants(env.pool)


async def noted_rows(pool: asyncpg.Pool, pay_ids: list[str]) -> dict[str, dict[str, Any]]:
    records = await pool.fetch(
        "SELECT pay_id, state, error_code, bank_txn_id, submitted_at FROM payouts "
        "WHERE pay_id = ANY($1::text[])",
        pay_ids,
    )
    return {r["pay_id"]: dict(r) for r in records}


class NoteCalls:
    """Counts the statements that note submissions (the batch's one, and the single path's)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.many = 0
        self.single = 0
        note_many, note_one = store.note_submitted_many, store.note_submitted

        async def counting_many(pool: asyncpg.Pool, answers: Any) -> set[str]:
            self.many += 1
            return await note_many(pool, answers)

        async def counting_one(pool: asyncpg.Pool, pay_id: str, txn_id: str | None) -> bool:
            self.single += 1
            return await note_one(pool, pay_id, txn_id)

        monkeypatch.setattr(store, "note_submitted_many", counting_many)
        monkeypatch.setattr(store, "note_submitted", counting_one)


async def test_a_batch_goes_to_the_bank_in_one_request_and_is_noted_in_one_pass(
    env: ModuleEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    await fund(env.pool, "acct-batch", 10_000)
    pay_ids = [await insert_payout(env.pool, "acct-batch", 1_000) for _ in range(6)]
    accepted = await accept(env, pay_ids)
    bank = ScriptedBank()
    calls = NoteCalls(monkeypatch)
    submitter = Submitter(env.pool, topics(env.settings), bank, "http://gw/callbacks/bank")
    submitter.submit_later(accepted.to_submit)  # what the consumer does after its commit

    async def all_noted() -> bool:
        rows = await noted_rows(env.pool, pay_ids)
        return all(r["submitted_at"] is not None for r in rows.values())

    for _ in range(200):
        if await all_noted():
            break
        await asyncio.sleep(0.02)
    await submitter.close()
    assert bank.batches == [pay_ids], "one request for the whole committed batch"
    assert bank.submitted == pay_ids
    assert (calls.many, calls.single) == (1, 0), "one statement notes them all"
    rows = await noted_rows(env.pool, pay_ids)
    for pay_id in pay_ids:
        assert rows[pay_id]["state"] == "PROCESSING"
        assert rows[pay_id]["bank_txn_id"] == "BTX" + pay_id
        assert rows[pay_id]["submitted_at"] is not None
    assert (await balances(env.pool))["acct-batch"] == (4_000, 6_000)
    await assert_ledger_invariants(env.pool)


async def test_each_payout_of_a_batch_ends_as_it_would_have_alone(
    env: ModuleEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    await fund(env.pool, "acct-mixed", 10_000)
    names = ["plain", "raced", "disagreeing", "failed", "invalid", "taken", "unsendable"]
    ids = {name: await insert_payout(env.pool, "acct-mixed", 1_000) for name in names}
    await env.pool.execute(
        "UPDATE payouts SET payee = $2::jsonb WHERE pay_id = $1",
        ids["unsendable"],
        {"accountName": "Supplier", "bankName": "Bank"},  # no account number
    )
    accepted = await accept(env, list(ids.values()))
    await report(env, ids["raced"], 1_000, "SUCCESS")  # its callback came before the answer
    await env.pool.execute(
        "UPDATE payouts SET bank_txn_id = 'BTX-first' WHERE pay_id = $1", ids["disagreeing"]
    )
    bank = ScriptedBank()
    bank.on_submit[ids["disagreeing"]] = BankAnswer(BankStatus.PROCESSING, "BTX-other")
    bank.on_submit[ids["failed"]] = BankAnswer(BankStatus.FAILED, "BTX-f", "payee account closed")
    bank.on_submit[ids["invalid"]] = BankRequestRefused(
        400, "amount: a positive integer string of fen"
    )
    bank.on_submit[ids["taken"]] = BankRequestRefused(409, "used for another transfer")
    calls = NoteCalls(monkeypatch)
    submitter = Submitter(env.pool, topics(env.settings), bank, "http://gw/callbacks/bank")
    await submitter.submit_batch(accepted.to_submit)

    assert bank.batches == [[ids[n] for n in names if n != "unsendable"]]
    assert calls.many == 1
    rows = {name: (await noted_rows(env.pool, [pay_id]))[pay_id] for name, pay_id in ids.items()}
    assert (rows["plain"]["state"], rows["plain"]["bank_txn_id"]) == (
        "PROCESSING",
        "BTX" + ids["plain"],
    )
    assert rows["raced"]["state"] == "SUCCESS" and rows["raced"]["submitted_at"] is not None
    assert (rows["disagreeing"]["state"], rows["disagreeing"]["bank_txn_id"]) == (
        "PROCESSING",
        "BTX-first",
    )
    assert rows["disagreeing"]["submitted_at"] is not None  # the bank has it, whatever its id
    assert (rows["failed"]["state"], rows["failed"]["error_code"]) == (
        "FAILED",
        "E016_PAYEE_INVALID",
    )
    assert (rows["invalid"]["state"], rows["invalid"]["error_code"]) == (
        "FAILED",
        "E015_BANK_REJECTED",
    )
    assert rows["invalid"]["submitted_at"] is None  # the bank made nothing
    assert (rows["taken"]["state"], rows["taken"]["submitted_at"]) == ("PROCESSING", None)
    assert rows["unsendable"]["state"] == "FAILED"
    # 10,000 funded; raced paid 1,000; failed, invalid and unsendable unfrozen; three frozen.
    assert (await balances(env.pool))["acct-mixed"] == (6_000, 3_000)
    await assert_ledger_invariants(env.pool)


async def test_a_batch_without_an_answer_is_left_to_the_poller(env: ModuleEnv) -> None:
    await fund(env.pool, "acct-silent", 10_000)
    pay_ids = [await insert_payout(env.pool, "acct-silent", 1_000) for _ in range(3)]
    accepted = await accept(env, pay_ids)
    bank = ScriptedBank()
    submitter = Submitter(env.pool, topics(env.settings), bank, "http://gw/callbacks/bank")
    for failure in (BankUnavailable("no answer"), BankRequestRefused(400, "transfers: 1 to 200")):
        bank.on_batch = failure
        await submitter.submit_batch(accepted.to_submit)
        rows = await noted_rows(env.pool, pay_ids)
        # Never a failure: not even a malformed batch says anything about one payout.
        assert {(r["state"], r["submitted_at"]) for r in rows.values()} == {("PROCESSING", None)}
    assert len(bank.batches) == 2
    assert (await balances(env.pool))["acct-silent"] == (7_000, 3_000)
