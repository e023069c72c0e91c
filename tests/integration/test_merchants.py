"""The merchants context against real Postgres and Kafka: idempotent registration under
concurrency, tenants kept apart, the depository's results applied exactly once through the real
consumer loop, the settlement account other contexts read, close refused then allowed, and the
worker's requests sent, resent and followed (a scripted depository in place of HTTP)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from support.env import ModuleEnv
from support.ledger import assert_ledger_invariants
from support.merchants import account, registration

from fundhub.common import db
from fundhub.common.clock import format_bank_time, utcnow
from fundhub.common.consumer import BatchConsumer
from fundhub.common.db import Connection
from fundhub.common.envelope import Envelope
from fundhub.common.errors import ErrorCode, FundhubError
from fundhub.common.kafka import KafkaPublisher, OutgoingMessage
from fundhub.common.topics import Topics, topics
from fundhub.ledger import store as ledger_store
from fundhub.ledger.rules import BANK_INFLOW, JournalEntry, credit, debit, new_entry_id
from fundhub.ledger.rules import system_account as sys_account
from fundhub.merchants import changes, consumers, lookup, store
from fundhub.merchants.admission import MerchantAdmission
from fundhub.merchants.depository import (
    DepositoryAnswer,
    DepositoryRequest,
    DepositoryUnavailable,
)
from fundhub.merchants.materials import (
    Registration,
    parse_registration,
    parse_settlement_account,
)
from fundhub.merchants.metrics import MESSAGES
from fundhub.merchants.poller import Poller
from fundhub.merchants.states import RequestKind, ResultStatus
from fundhub.merchants.submitter import Submitter

APP = "20210911888888888888888888"
INFLOW = sys_account(BANK_INFLOW, "CNY")


def parsed(merchant_no: str, **changes: Any) -> Registration:
    return parse_registration(json.dumps(registration(merchant_no, **changes)).encode())


@pytest.fixture(scope="module")
def names(env: ModuleEnv) -> Topics:
    return topics(env.settings)


@pytest.fixture(scope="module")
def admission(env: ModuleEnv, names: Topics) -> MerchantAdmission:
    return MerchantAdmission(env.pool, names, first_poll_s=3600)


async def counts(env: ModuleEnv, merchant_no: str) -> Counter[str]:
    row = await env.pool.fetchrow(
        """
        SELECT count(DISTINCT m.merchant_id) AS merchants,
               (SELECT count(*) FROM merchant_versions v JOIN merchants n USING (merchant_id)
                WHERE n.merchant_no = $1) AS versions,
               (SELECT count(*) FROM merchant_requests r JOIN merchants n USING (merchant_id)
                WHERE n.merchant_no = $1) AS requests,
               (SELECT count(*) FROM accounts a JOIN merchants n USING (account_id)
                WHERE n.merchant_no = $1) AS accounts,
               (SELECT count(*) FROM account_balances b JOIN merchants n USING (account_id)
                WHERE n.merchant_no = $1) AS balances,
               (SELECT count(*) FROM outbox o JOIN merchants n ON o.key = n.merchant_id
                WHERE n.merchant_no = $1) AS commands
        FROM merchants m WHERE m.merchant_no = $1
        """,
        merchant_no,
    )
    assert row is not None
    return Counter(dict(row))


async def decide(
    env: ModuleEnv,
    names: Topics,
    merchant_id: str,
    kind: RequestKind,
    status: ResultStatus = ResultStatus.SUCCESS,
    reason: str | None = None,
) -> str:
    """The depository's result on the merchant's open request of that kind, as a notification
    would bring it (the request noted as sent through APP)."""
    request_id = await env.pool.fetchval(
        "SELECT request_id FROM merchant_requests WHERE merchant_id = $1 AND kind = $2"
        " AND state <> 'DONE' ORDER BY request_id DESC LIMIT 1",
        merchant_id,
        kind.value,
    )
    assert request_id is not None, f"no open {kind} request"
    await env.pool.execute(
        "UPDATE merchant_requests SET bank_app_id = $2 WHERE request_id = $1", request_id, APP
    )
    async with env.pool.acquire() as conn, conn.transaction():
        outcome = await changes.settle(
            conn, names, request_id, status, reason, "M0001", "test", from_app=APP
        )
    assert outcome == "applied"
    request_id_text: str = request_id
    return request_id_text


async def active_merchant(
    env: ModuleEnv, names: Topics, admission: MerchantAdmission, key: str, **changes: Any
) -> str:
    answered = await admission.register(key, parsed(f"M-{uuid.uuid4().hex[:8]}", **changes), "t")
    merchant_id: str = answered.view.merchant["merchant_id"]
    await decide(env, names, merchant_id, RequestKind.OPEN)
    return merchant_id


async def test_concurrent_copies_of_a_registration_make_one_merchant(
    env: ModuleEnv, admission: MerchantAdmission
) -> None:
    copies = await asyncio.gather(
        *(admission.register("ak_one", parsed("M-SAME"), f"c{i}") for i in range(20))
    )
    assert {c.view.merchant["merchant_id"] for c in copies} == {
        copies[0].view.merchant["merchant_id"]
    }
    assert all(c.view.merchant["state"] == "PENDING_REVIEW" for c in copies)
    found = await counts(env, "M-SAME")
    assert found == Counter(merchants=1, versions=1, requests=1, accounts=1, balances=1, commands=1)


async def test_concurrent_different_bodies_one_wins_the_others_conflict(
    env: ModuleEnv, admission: MerchantAdmission
) -> None:
    outcomes = await asyncio.gather(
        *(admission.register("ak_one", parsed("M-RACE", name=f"Shop {i}"), "c") for i in range(10)),
        return_exceptions=True,
    )
    won = [o for o in outcomes if not isinstance(o, BaseException)]
    lost = [o for o in outcomes if isinstance(o, FundhubError)]
    assert len(won) == 1 and len(lost) == 9
    assert {e.error for e in lost} == {ErrorCode.IDEMPOTENCY_CONFLICT}
    assert "merchantNo: M-RACE was used before with another body" in lost[0].message
    assert await counts(env, "M-RACE") == Counter(
        merchants=1, versions=1, requests=1, accounts=1, balances=1, commands=1
    )
    again = await admission.register(
        "ak_one", parsed("M-RACE", name=won[0].view.versions[0]["materials"]["name"]), "c"
    )
    assert again.view.merchant["merchant_id"] == won[0].view.merchant["merchant_id"]


async def test_tenants_are_kept_apart(env: ModuleEnv, admission: MerchantAdmission) -> None:
    mine = await admission.register("ak_mine", parsed("M-SHARED"), "c")
    theirs = await admission.register("ak_theirs", parsed("M-SHARED"), "c")
    my_id = mine.view.merchant["merchant_id"]
    their_id = theirs.view.merchant["merchant_id"]
    assert my_id != their_id
    assert await admission.get("ak_mine", their_id) is None
    assert await admission.find("ak_mine", "M-SHARED") is not None
    with pytest.raises(FundhubError) as caught:
        await admission.close("ak_mine", their_id, "c")
    assert caught.value.error is ErrorCode.NOT_FOUND
    async with env.pool.acquire() as conn:
        assert await lookup.owns_account(conn, "ak_mine", mine.view.merchant["account_id"])
        assert not await lookup.owns_account(conn, "ak_mine", theirs.view.merchant["account_id"])
        standing = await lookup.standings(conn, "ak_mine", [my_id, their_id])
    assert set(standing) == {my_id} and not standing[my_id].may_trade


async def test_the_settlement_account_others_read_is_the_verified_one(
    env: ModuleEnv, names: Topics, admission: MerchantAdmission
) -> None:
    merchant_id = await active_merchant(env, names, admission, "ak_acct")

    async def in_use() -> str | None:
        async with env.pool.acquire() as conn:
            found = await lookup.settlement_account(conn, "ak_acct", merchant_id)
            assert await lookup.settlement_account(conn, "ak_other", merchant_id) is None
        return None if found is None else found.account_no

    first = parse_settlement_account(json.dumps(account("6222000000000001")).encode())
    await admission.bind_account("ak_acct", merchant_id, first, "c")
    assert await in_use() is None
    await decide(env, names, merchant_id, RequestKind.BIND)
    await admission.confirm("ak_acct", merchant_id, 17, "c")
    await decide(env, names, merchant_id, RequestKind.CONFIRM)
    assert await in_use() == "6222000000000001"
    second = parse_settlement_account(json.dumps(account("6222000000000002")).encode())
    await admission.bind_account("ak_acct", merchant_id, second, "c")
    await decide(env, names, merchant_id, RequestKind.BIND)
    assert await in_use() == "6222000000000001"  # until the new one is verified
    await admission.confirm("ak_acct", merchant_id, 3, "c")
    await decide(env, names, merchant_id, RequestKind.CONFIRM, ResultStatus.FAILED, "mismatch")
    assert await in_use() == "6222000000000001"
    await admission.confirm("ak_acct", merchant_id, 4, "c")
    await decide(env, names, merchant_id, RequestKind.CONFIRM)
    assert await in_use() == "6222000000000002"
    states = await env.pool.fetch(
        "SELECT account_no, state, failed_attempts FROM merchant_settlement_accounts"
        " WHERE merchant_id = $1 ORDER BY binding_id",
        merchant_id,
    )
    assert [tuple(r) for r in states] == [
        ("6222000000000001", "REPLACED", 0),
        ("6222000000000002", "VERIFIED", 1),
    ]


class OpenOrders:
    """``UnsettledOrders`` over a table of this test's (the orders context's will be real)."""

    async def count(self, conn: Connection, merchant_id: str) -> int:
        found: int = await conn.fetchval(
            "SELECT count(*) FROM test_open_orders WHERE merchant_id = $1", merchant_id
        )
        return found


async def move(env: ModuleEnv, account_id: str, amount: int) -> None:
    """Credit (amount > 0) or debit the merchant account's available balance."""
    postings = (
        credit(account_id, "CNY", amount, source=INFLOW)
        if amount > 0
        else debit(account_id, "CNY", -amount, target=INFLOW)
    )
    entry = JournalEntry(new_entry_id(), "test", "test", account_id, postings)
    async with env.pool.acquire() as conn, conn.transaction():
        await ledger_store.ensure_accounts(conn, [], [INFLOW])
        now = await ledger_store.lock_balances(conn, [account_id])
        after = type(now[account_id])(account_id, "CNY", now[account_id].available + amount)
        await db.write_together(
            conn,
            [*ledger_store.entry_writes([entry], [None]), *ledger_store.balance_writes([after])],
        )


async def test_close_is_refused_while_money_or_orders_remain_then_confirmed(
    env: ModuleEnv, names: Topics
) -> None:
    await env.pool.execute("CREATE TABLE IF NOT EXISTS test_open_orders (merchant_id text)")
    admission = MerchantAdmission(env.pool, names, 3600, unsettled_orders=[OpenOrders()])
    merchant_id = await active_merchant(env, names, admission, "ak_close")
    account_id = (await admission.get("ak_close", merchant_id)).merchant["account_id"]  # type: ignore[union-attr]
    await move(env, account_id, 500)
    with pytest.raises(FundhubError) as money:
        await admission.close("ak_close", merchant_id, "c")
    assert money.value.error is ErrorCode.MERCHANT_BALANCE_NOT_ZERO
    await move(env, account_id, -500)
    await env.pool.execute("INSERT INTO test_open_orders VALUES ($1)", merchant_id)
    with pytest.raises(FundhubError) as orders:
        await admission.close("ak_close", merchant_id, "c")
    assert orders.value.error is ErrorCode.MERCHANT_HAS_UNSETTLED_ORDERS
    await env.pool.execute("DELETE FROM test_open_orders")
    closing = await admission.close("ak_close", merchant_id, "c")
    assert closing.view.merchant["state"] == "CLOSING" and closing.underway
    async with env.pool.acquire() as conn:
        assert not (await lookup.standings(conn, "ak_close", [merchant_id]))[merchant_id].may_trade
    await decide(env, names, merchant_id, RequestKind.CLOSE)
    closed = await admission.get("ak_close", merchant_id)
    assert closed is not None and closed.merchant["state"] == "CLOSED"
    await assert_ledger_invariants(env.pool)


# --- the results consumer, for real -------------------------------------------------------------


def result_envelope(request_id: str, merchant_id: str, app_id: str = APP) -> Envelope:
    biz = {
        "request_id": request_id,
        "member_ext_id": merchant_id,
        "kind": "OPEN",
        "status": "SUCCESS",
        "reason": "",
        "member_no": "M0042",
        "finished_time": format_bank_time(utcnow()),
    }
    text = json.dumps(biz, separators=(",", ":"))
    from fundhub.bank_transfers.notification import notification_message_id

    return Envelope(
        id=notification_message_id(app_id, text),
        type="bank.member-result.received",
        correlation_id=uuid.uuid4().hex,
        data={"appId": app_id, "params": {"biz_content": text, "method": "x"}},
    )


@pytest.fixture
async def publisher(env: ModuleEnv) -> AsyncIterator[KafkaPublisher]:
    kafka = KafkaPublisher(env.settings)
    await kafka.start()
    yield kafka
    await kafka.stop()


async def consume_until(
    env: ModuleEnv, names: Topics, publisher: KafkaPublisher, group: str, done: Any
) -> None:
    consumer = BatchConsumer(
        env.settings,
        env.pool,
        publisher,
        names.group(group),
        names.bank_merchant_results,
        consumers.result_handler(env.settings, names),
    )
    task = asyncio.create_task(consumer.run())
    try:
        for _ in range(300):
            if await done():
                return
            await asyncio.sleep(0.1)
        raise AssertionError("the consumer did not get there")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_results_apply_once_through_duplicates_redelivery_and_a_foreign_app(
    env: ModuleEnv, names: Topics, admission: MerchantAdmission, publisher: KafkaPublisher
) -> None:
    answered = await admission.register(
        "ak_kafka", parsed("M-KAFKA", notifyUrl="https://erp.example/merchants"), "c"
    )
    merchant_id = answered.view.merchant["merchant_id"]
    request_id = await env.pool.fetchval(
        "SELECT request_id FROM merchant_requests WHERE merchant_id = $1", merchant_id
    )
    async with env.pool.acquire() as conn:
        await store.note_app(conn, [request_id], APP)
    genuine = result_envelope(request_id, merchant_id)
    foreign = result_envelope(request_id, merchant_id, app_id="20990101000000000000000000")
    topic = names.bank_merchant_results
    await publisher.send_many(
        [OutgoingMessage.of(topic, e, merchant_id) for e in (foreign, genuine, genuine, genuine)]
    )

    async def active() -> bool:
        return bool(
            await env.pool.fetchval(
                "SELECT state = 'ACTIVE' FROM merchants WHERE merchant_id = $1", merchant_id
            )
        )

    await consume_until(env, names, publisher, "merchant-results-a", active)

    async def settled_state() -> tuple[Any, ...]:
        row = await env.pool.fetchrow(
            "SELECT m.state, m.member_no, m.approved_version, r.state AS request, r.outcome,"
            " (SELECT count(*) FROM outbox WHERE topic = $2 AND key = m.merchant_id) AS callbacks,"
            " (SELECT count(*) FROM inbox WHERE consumer = $3) AS claimed"
            " FROM merchants m JOIN merchant_requests r USING (merchant_id)"
            " WHERE m.merchant_id = $1",
            merchant_id,
            names.client_callbacks,
            consumers.RESULTS_CONSUMER,
        )
        assert row is not None
        return tuple(row)

    first = await settled_state()
    assert first == ("ACTIVE", "M0042", 1, "DONE", "SUCCESS", 1, 2)
    callback = await env.pool.fetchval(
        "SELECT payload FROM outbox WHERE topic = $1 AND key = $2",
        names.client_callbacks,
        merchant_id,
    )
    data = Envelope.from_bytes(bytes(callback)).data
    assert (data["state"], data["url"], data["keyId"]) == (
        "ACTIVE:1",
        "https://erp.example/merchants",
        "ak_kafka",
    )
    assert data["body"]["event"] == "MERCHANT_APPROVED" and data["body"]["state"] == "ACTIVE"

    # Everything again, from the start, under another group: the inbox stops all of it.
    duplicates = MESSAGES.labels("results", "duplicate")
    before = duplicates._value.get()

    async def all_read() -> bool:
        return bool(duplicates._value.get() - before >= 4)

    await consume_until(env, names, publisher, "merchant-results-b", all_read)
    assert await settled_state() == first


# --- the worker's requests: sent after the commit, resent by the poller --------------------------


class ScriptedDepository:
    """Answers from a script; records what it was asked (the simulator has its own tests)."""

    def __init__(self) -> None:
        self.submitted: list[DepositoryRequest] = []
        self.queried: list[str] = []
        self.answers: list[DepositoryAnswer | Exception] = []
        self.on_query: DepositoryAnswer | None = None

    async def submit(self, request: DepositoryRequest) -> DepositoryAnswer:
        self.submitted.append(request)
        answer = (
            self.answers.pop(0)
            if self.answers
            else DepositoryAnswer(request.request_id, ResultStatus.PROCESSING)
        )
        if isinstance(answer, Exception):
            raise answer
        return DepositoryAnswer(request.request_id, answer.status, answer.reason, answer.member_no)

    async def query(self, request_id: str) -> DepositoryAnswer | None:
        self.queried.append(request_id)
        return self.on_query


async def test_a_request_is_sent_after_the_commit_and_followed_until_decided(
    env: ModuleEnv, names: Topics, admission: MerchantAdmission
) -> None:
    depository = ScriptedDepository()
    depository.answers = [DepositoryUnavailable("down")]
    submitter = Submitter(env.pool, names, depository, "http://127.0.0.1:9/callbacks/bank")
    answered = await admission.register("ak_worker", parsed("M-WORKER"), "c")
    merchant_id = answered.view.merchant["merchant_id"]
    request_id = await env.pool.fetchval(
        "SELECT request_id FROM merchant_requests WHERE merchant_id = $1", merchant_id
    )
    command = consumers.RequestCommand(str(uuid.uuid4()), "c", request_id, merchant_id)
    async with env.pool.acquire() as conn, conn.transaction():
        rows, skipped = await consumers.take_requests(conn, [command, command], APP)
    assert [r["request_id"] for r in rows] == [request_id] and skipped == 1
    await submitter.submit(rows[0])  # the bank is away: nothing changes
    sent = depository.submitted[0]
    assert (sent.kind, sent.member_ext_id) == (RequestKind.OPEN, merchant_id)
    assert sent.details["materials"]["legal_person"]["id_type"] == "RESIDENT_ID"
    row = await env.pool.fetchrow(
        "SELECT state, bank_app_id FROM merchant_requests WHERE request_id = $1", request_id
    )
    assert tuple(row) == ("QUEUED", APP)  # type: ignore[arg-type]

    settings = env.settings.model_copy(update={"merchant_poll_base_s": 0.0})
    await env.pool.execute(
        "UPDATE merchant_requests SET next_poll_at = now() WHERE request_id = $1", request_id
    )
    poller = Poller(settings, env.pool, submitter)
    assert await poller.poll_once() >= 1  # unsent: sent again, the bank takes it
    assert [r.request_id for r in depository.submitted] == [request_id, request_id]
    assert depository.submitted[1].to_wire() == sent.to_wire()  # byte for byte the same
    state = await env.pool.fetchval(
        "SELECT state FROM merchant_requests WHERE request_id = $1", request_id
    )
    assert state == "SENT"
    depository.on_query = DepositoryAnswer(request_id, ResultStatus.FAILED, "REJECT list")
    await env.pool.execute(
        "UPDATE merchant_requests SET next_poll_at = now() WHERE request_id = $1", request_id
    )
    await poller.poll_once()  # sent: asked about, and the answer decides it
    assert depository.queried[-1] == request_id
    view = await admission.get("ak_worker", merchant_id)
    assert view is not None
    assert (view.merchant["state"], view.merchant["reason"]) == ("REJECTED", "REJECT list")
    await submitter.close()
