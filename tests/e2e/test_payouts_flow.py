"""Supplier payouts end to end: POST /v1/payouts -> payment-worker -> bank simulator -> results.

Real processes: gateway, notify-ingest (funds the payers from signed transfer notifications),
payment-worker (SIGKILLed mid-run) and the bank simulator's payout side with its fault rates.
The stack is a sandbox deployment: the sandbox's scenario controls are tested on it too (at
the end), against a live gateway on the live deployment's own database.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web
from support.api import signed_get, signed_headers
from support.env import ModuleEnv
from support.ledger import assert_ledger_invariants, balances
from support.payout_load import PAYOUTS_PATH, payout_body
from support.processes import Service, callback_dispatcher, free_port, gateway, notify_ingest
from support.receivers import ALLOW_LOCAL_RECEIVERS
from support.settlement_services import bank_simulator, payment_worker

from e2e.conftest import wait_until
from fundhub.bank_simulator.notifications import TransferSpec, build_many
from fundhub.bank_simulator.payout_callbacks import build_result_notification
from fundhub.bank_simulator.sender import BankSender, callback_url
from fundhub.bank_transfers.notification import notification_message_id
from fundhub.common.clock import format_bank_time, utcnow
from fundhub.common.signing import generate_rsa_keypair, webhook_signature
from fundhub.ledger.rules import system_account

CLEARING = system_account("bank-payout-clearing", "CNY")
# The client callbacks are asserted delivered when the dispatcher exists, else as outbox events.
HAS_DISPATCHER = importlib.util.find_spec("fundhub.callback_dispatcher.main") is not None
QUIET = {
    "failRate": 0.0,
    "timeoutRate": 0.0,
    "serverErrorRate": 0.0,
    "duplicateCallbackRate": 0.0,
    "lateReturnRate": 0.0,
    "neverAnswerRate": 0.0,
}


@dataclass
class PayoutStack:
    env: ModuleEnv
    gateway: Service
    worker: Service
    bank_sim: Service
    http: httpx.AsyncClient
    bank: BankSender
    key_id: str
    secret: str
    receiver: CallbackReceiver
    services: list[Service] = field(default_factory=list)  # every process of the stack

    async def fund(self, accounts: dict[str, int]) -> None:
        """Credit each account's available balance through a signed transfer notification."""
        specs = [
            TransferSpec(record_id=f"fund-{uuid.uuid4().hex[:20]}", in_acct_no=a, trans_amount=n)
            for a, n in accounts.items()
        ]
        for params in build_many(specs, self.env.app_id, self.env.bank.private_pem):
            response = await self.http.post("/callbacks/bank", json=params)
            assert response.text == "success", response.text

        async def credited() -> bool:
            now = await balances(self.env.pool)
            return all(now.get(a, (0, 0))[0] >= n for a, n in accounts.items())

        await wait_until(credited, timeout_s=20)

    async def create_payout(self, payer: str, amount: int, **extra: Any) -> dict[str, Any]:
        body = payout_body(f"req-{uuid.uuid4().hex}", payer, amount, **extra)
        for _ in range(5):  # the gateway answers 503 only when a dependency is away: retry
            # Signed anew: a 503 may come after the request's nonce was taken.
            headers = signed_headers(self.key_id, self.secret, "POST", PAYOUTS_PATH, None, body)
            headers["Content-Type"] = "application/json"
            response = await self.http.post(PAYOUTS_PATH, content=body, headers=headers)
            if response.status_code != 503:
                break
            await asyncio.sleep(0.2)
        assert response.status_code in (200, 202), response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def bank_behaviour(self, **rates: Any) -> None:
        response = await self.http.post(f"{self.bank_sim.url}/bank/v1/behaviour", json=rates)
        assert response.status_code == 200, response.text

    async def bank_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = (await self.http.get(f"{self.bank_sim.url}/bank/v1/stats")).json()
        return stats


class CallbackReceiver:
    """The client's callbackUrl: records every signed callback it is sent, answers 200."""

    def __init__(self) -> None:
        self.port = free_port()
        self.webhook_secret = ""
        self.received: list[tuple[str, str]] = []
        self.bad_signatures = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/payout-callback"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        timestamp = request.headers.get("X-Fundhub-Timestamp", "")
        expected = webhook_signature(self.webhook_secret, timestamp, body)
        if request.headers.get("X-Fundhub-Signature") != expected:
            self.bad_signatures += 1
        payload = json.loads(body)
        self.received.append((payload["payId"], payload["state"]))
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/payout-callback", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture(scope="module")
async def payouts(env: ModuleEnv) -> AsyncIterator[PayoutStack]:
    env.register_bank_app()
    gw, ingest = gateway(env, **ALLOW_LOCAL_RECEIVERS), notify_ingest(env)
    sim = bank_simulator(env, gw.url)
    worker = payment_worker(env, sim.url, gw.url)
    services = [gw, ingest, sim, worker]
    if HAS_DISPATCHER:
        services.append(
            callback_dispatcher(env, backoff_base_s=0.2, backoff_max_s=1, **ALLOW_LOCAL_RECEIVERS)
        )
    receiver = CallbackReceiver()
    await receiver.start()
    for service in services:
        service.start()
    try:
        await asyncio.gather(*(s.wait_ready() for s in services))
        created = json.loads(
            env.cli(
                "api-key", "create", "--name", "payouts", "--scopes",
                "payouts:write,payouts:read", "--accounts", "*", "--json",
            )
        )  # fmt: skip
        key_id, secret = created["keyId"], created["secret"]
        receiver.webhook_secret = created.get("webhookSecret", "")
        async with (
            httpx.AsyncClient(base_url=gw.url, timeout=30) as http,
            aiohttp.ClientSession() as session,
        ):
            sender = BankSender(session, callback_url(gw.url), retries=3, retry_interval_s=0.5)
            yield PayoutStack(
                env, gw, worker, sim, http, sender, key_id, secret, receiver, services
            )
    finally:
        for service in reversed(services):
            service.stop()
        await receiver.stop()


async def payout_rows(pool: Any, pay_ids: list[str]) -> dict[str, dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT pay_id, payer_account_id, amount, state, error_code, held, alerted_at "
        "FROM payouts WHERE pay_id = ANY($1::text[])",
        pay_ids,
    )
    return {r["pay_id"]: dict(r) for r in rows}


async def test_concurrent_payouts_from_one_account_only_those_that_fit(
    payouts: PayoutStack,
) -> None:
    await payouts.bank_behaviour(**QUIET)
    account = "6222990000000001"
    await payouts.fund({account: 10_000})
    answers = await asyncio.gather(*(payouts.create_payout(account, 1_000) for _ in range(20)))
    pay_ids = [a["payId"] for a in answers]
    pool = payouts.env.pool

    async def all_final() -> bool:
        rows = await payout_rows(pool, pay_ids)
        return all(r["state"] != "PROCESSING" for r in rows.values())

    await wait_until(all_final, timeout_s=30)
    rows = await payout_rows(pool, pay_ids)
    states = Counter((r["state"], r["error_code"]) for r in rows.values())
    assert states == {("SUCCESS", None): 10, ("FAILED", "E004_INSUFFICIENT_FUNDS"): 10}, states
    refused = [p for p, r in rows.items() if r["error_code"] == "E004_INSUFFICIENT_FUNDS"]
    posted = await pool.fetchval(
        "SELECT count(*) FROM journal_entries WHERE ref_type = 'payout' AND ref_id = ANY($1)",
        refused,
    )
    assert posted == 0
    assert (await balances(pool))[account] == (0, 0)
    await assert_ledger_invariants(pool)


async def test_a_thousand_payouts_through_faults_and_two_crashes(payouts: PayoutStack) -> None:
    await payouts.bank_behaviour(
        failRate=0.10,
        timeoutRate=0.10,
        serverErrorRate=0.0,
        duplicateCallbackRate=0.05,
        lateReturnRate=0.02,
        neverAnswerRate=0.02,
    )
    pool = payouts.env.pool
    payers = [f"62229900000001{i:02d}" for i in range(20)]
    await payouts.fund({p: 5_000_000 for p in payers})
    before_clearing = await clearing_total(pool)
    rng = random.Random(7)
    plan = [(rng.choice(payers), rng.randint(100, 50_000)) for _ in range(1_000)]
    semaphore = asyncio.Semaphore(40)
    created: list[dict[str, Any]] = []

    async def one(payer: str, amount: int) -> None:
        async with semaphore:
            created.append(
                await payouts.create_payout(payer, amount, callbackUrl=payouts.receiver.url)
            )

    async def crash_twice() -> None:
        for threshold in (300, 700):

            async def reached(count: int = threshold) -> bool:
                return len(created) >= count

            await wait_until(reached, timeout_s=60)
            payouts.worker.kill()
            payouts.worker.start()
            await payouts.worker.wait_ready()

    await asyncio.gather(crash_twice(), *(one(p, a) for p, a in plan))
    pay_ids = [c["payId"] for c in created]
    assert len(set(pay_ids)) == 1_000

    async def settled() -> bool:
        rows = await payout_rows(pool, pay_ids)
        if any(r["state"] == "PROCESSING" and r["alerted_at"] is None for r in rows.values()):
            return False
        return bool((await payouts.bank_stats())["pendingTasks"] == 0)

    await wait_until(settled, timeout_s=90, interval_s=0.5)

    # Each payout ends where the bank says it is (the bank is the truth), once. A report the bank
    # sent last may still be on its way: a SUCCESS later returned is final in both places in
    # between, and a killed worker's partitions wait out its session before they move on.
    async def mismatches() -> list[tuple[str, str, str]]:
        found = []
        for pay_id, row in (await payout_rows(pool, pay_ids)).items():
            url = f"{payouts.bank_sim.url}/bank/v1/transfers/{pay_id}"
            bank = (await payouts.http.get(url)).json()
            if row["state"] != bank["status"]:
                found.append((pay_id, row["state"], bank["status"]))
        return found

    async def converged() -> bool:
        return await mismatches() == []

    with contextlib.suppress(AssertionError):  # the assertion below names what did not converge
        await wait_until(converged, timeout_s=45, interval_s=1.0)
    mismatched = await mismatches()
    assert mismatched == [], mismatched[:10]
    rows = await payout_rows(pool, pay_ids)
    states = Counter(r["state"] for r in rows.values())
    assert states["PROCESSING"] == 0, states
    # The faults happened: timed-out requests, duplicated and withheld callbacks, crashes.
    stats = await payouts.bank_stats()
    assert stats["timeouts"] > 0, stats
    assert stats["callbacks"]["duplicated"] > 0 and stats["callbacks"]["withheld"] > 0, stats
    worker_log = payouts.worker.log_path.read_text()
    assert worker_log.count("payment_worker_started") == 3  # started, killed twice
    assert "payout_report_alert" not in worker_log  # no report contradicted another
    assert states["FAILED"] > 0 and states["RETURNED"] > 0 and states["SUCCESS"] > 0, states

    await assert_paid_exactly(pool, rows, before_clearing)
    for account, (_, frozen) in (await balances(pool)).items():
        if account in payers:
            assert frozen == 0, account
    await assert_ledger_invariants(pool)

    # Every final state announced once to the client's callbackUrl (a RETURNED payout's
    # SUCCESS too, unless the bank's SUCCESS report was lost).
    callbacks = await pool.fetch(
        "SELECT convert_from(payload, 'UTF8')::jsonb -> 'data' AS d FROM outbox WHERE topic = $1",
        f"{payouts.env.settings.topic_namespace}.callbacks.v1",
    )
    announced = Counter((c["d"]["payId"], c["d"]["state"]) for c in callbacks)
    assert all(n == 1 for n in announced.values()), [k for k, n in announced.items() if n > 1]
    missing = [(p, r["state"]) for p, r in rows.items() if (p, r["state"]) not in announced]
    assert missing == [], missing[:10]
    if not HAS_DISPATCHER:
        return
    expected_callbacks = {k for k in announced if k[0] in rows}

    async def delivered() -> bool:
        return expected_callbacks <= set(payouts.receiver.received)

    assert payouts.receiver.webhook_secret, "api-key create --json gave no webhookSecret"
    await wait_until(delivered, timeout_s=30, interval_s=0.5)
    assert payouts.receiver.bad_signatures == 0
    undelivered = await pool.fetchval(
        "SELECT count(*) FROM callback_deliveries WHERE pay_id = ANY($1::text[]) "
        "AND status <> 'DELIVERED'",
        pay_ids,
    )
    assert undelivered == 0


async def assert_paid_exactly(
    pool: Any, rows: dict[str, dict[str, Any]], clearing_before: int
) -> None:
    """Money, for the payouts ``rows`` (their final states): clearing holds exactly the paid (not
    returned) amounts since ``clearing_before``; each payer lost exactly its paid ones."""
    paid = [r for r in rows.values() if r["state"] == "SUCCESS"]
    assert await clearing_total(pool) - clearing_before == sum(r["amount"] for r in paid)
    per_payer = await pool.fetch(
        "SELECT p.account_id, sum(p.amount) AS net FROM postings p "
        "JOIN journal_entries e USING (entry_id) "
        "WHERE e.ref_type = 'payout' AND e.ref_id = ANY($1::text[]) "
        "AND p.account_id <> $2 GROUP BY p.account_id",
        list(rows),
        CLEARING,
    )
    expected = Counter[str]()
    for r in paid:
        expected[r["payer_account_id"]] -= r["amount"]
    assert {r["account_id"]: r["net"] for r in per_payer if r["net"]} == {
        a: n for a, n in expected.items() if n
    }


async def clearing_total(pool: Any) -> int:
    total = await pool.fetchval(
        "SELECT coalesce(sum(amount), 0) FROM postings WHERE account_id = $1", CLEARING
    )
    return int(total)


async def test_a_second_bank_app_cannot_return_a_paid_payout(payouts: PayoutStack) -> None:
    """Defect 1 of issue 9, as the attacker did it: a second registered bank app sends a
    correctly signed RETURNED for a paid payout. The gateway takes it (the signature is good),
    the worker moves nothing: the payout went through the first app."""
    await payouts.bank_behaviour(**QUIET)
    pool = payouts.env.pool
    account = "6222990000000777"
    await payouts.fund({account: 5_000})
    pay_id = (await payouts.create_payout(account, 1_000))["payId"]

    async def paid() -> bool:
        return (await payout_rows(pool, [pay_id]))[pay_id]["state"] == "SUCCESS"

    await wait_until(paid, timeout_s=30)
    other_app = "20990101000000000000000002"
    other_private, other_public = generate_rsa_keypair()
    pem = payouts.env.tmp / "second-bank-app.pem"
    pem.write_text(other_public)
    payouts.env.cli("bank-app", "add", "--app-id", other_app, "--public-key", str(pem))
    before = (await balances(pool))[account]
    # The payout's bank transaction id is no secret: its reader sees extension.bankTransactionId.
    txn = await pool.fetchval("SELECT bank_txn_id FROM payouts WHERE pay_id = $1", pay_id)
    biz = {
        "bank_request_id": pay_id,
        "bank_txn_id": txn,
        "status": "RETURNED",
        "reason": "payee account closed",
        "amount": "1000",
        "finished_time": format_bank_time(utcnow()),
    }
    params = build_result_notification(biz, other_app, other_private)
    response = await payouts.http.post("/callbacks/bank", json=params)
    assert response.text == "success", response.text
    message_id = notification_message_id(other_app, params["biz_content"])

    async def consumed() -> bool:
        found = await pool.fetchval(
            "SELECT count(*) FROM inbox WHERE consumer = 'payment-worker.results' "
            "AND message_id = $1",
            message_id,
        )
        return bool(found)

    await wait_until(consumed, timeout_s=20)
    row = (await payout_rows(pool, [pay_id]))[pay_id]
    assert (row["state"], row["error_code"]) == ("SUCCESS", None)
    assert (await balances(pool))[account] == before
    await assert_ledger_invariants(pool)


# --- the sandbox (README "Sandbox"): this stack is a sandbox deployment (FUNDHUB_ENV=test) ---
# A sandbox key drives the simulators through the same API, with scenario controls; a live
# deployment, on its own database, neither serves the controls nor shows sandbox objects, and
# the other way round. (Seed: "模拟环境支持:可先行在沙箱环境测试接口流程与数据,避免对线上资产产生影响".)

SCENARIOS = "/v1/sandbox/payout-scenarios"
SANDBOX_PAYER = "6222990000000077"


@pytest.fixture(scope="module")
async def live(live_env: ModuleEnv) -> AsyncIterator[Service]:
    """A production gateway (FUNDHUB_ENV=prod) on the live deployment's own database."""
    service = gateway(live_env)
    service.start()
    try:
        await service.wait_ready()
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def live_key(live_env: ModuleEnv, live: Service) -> tuple[str, str]:
    created = create_key(live_env)
    assert created["environment"] == "live"
    return created["keyId"], created["secret"]


def create_key(env: ModuleEnv) -> dict[str, str]:
    out = env.cli(
        "api-key", "create", "--name", "sandbox-e2e", "--scopes", "payouts:write,payouts:read",
        "--accounts", "*", "--json",
    )  # fmt: skip
    key: dict[str, str] = json.loads(out)
    return key


async def post(
    http: httpx.AsyncClient, key: tuple[str, str], path: str, body: dict[str, Any] | bytes
) -> httpx.Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = signed_headers(key[0], key[1], "POST", path, None, raw)
    headers["Content-Type"] = "application/json"
    return await http.post(path, content=raw, headers=headers)


async def get(
    http: httpx.AsyncClient, key: tuple[str, str], path: str, **query: str
) -> httpx.Response:
    return await signed_get(http, key[0], key[1], path, list(query.items()) or None)


def refusal(response: httpx.Response) -> tuple[int, str, str, bool]:
    """What a refusal tells: status, code, message, and whether it is signed."""
    body = response.json()
    return response.status_code, body["errorCode"], body["msg"], "X-Signature" in response.headers


def headers_of(response: httpx.Response) -> dict[str, str]:
    """The headers' values, but those that differ on every answer (date, correlation id)."""
    return {k: v for k, v in response.headers.items() if k not in ("date", "x-correlation-id")}


async def test_a_payout_forced_to_fail_with_its_result_late_and_twice(
    payouts: PayoutStack,
) -> None:
    await payouts.bank_behaviour(**QUIET)
    await payouts.fund({SANDBOX_PAYER: 5_000})
    key = (payouts.key_id, payouts.secret)
    request_id = f"sbx-{uuid.uuid4().hex[:12]}"
    scenario = {
        "requestId": request_id,
        "outcome": "FAILED",
        "reason": "sandbox: account frozen",
        "resultDelayMs": 1500,
        "resultCopies": 2,
    }
    placed = await post(payouts.http, key, SCENARIOS, scenario)
    assert placed.status_code == 201, placed.text
    assert {k: placed.json()[k] for k in scenario} == scenario

    body = payout_body(request_id, SANDBOX_PAYER, 1_200, callbackUrl=payouts.receiver.url)
    created = await post(payouts.http, key, PAYOUTS_PATH, body)
    assert created.status_code == 202, created.text
    pay_id = created.json()["payId"]
    # Too late now: the payout exists, its scenario cannot change under it.
    again = await post(payouts.http, key, SCENARIOS, {**scenario, "outcome": "SUCCESS"})
    assert refusal(again)[:2] == (409, "E081_SCENARIO_TOO_LATE")

    # The result is due 1.5 s after the bank took the payout: PROCESSING until then.
    await asyncio.sleep(0.8)
    assert (await get(payouts.http, key, f"{PAYOUTS_PATH}/{pay_id}")).json()["state"] == (
        "PROCESSING"
    )

    async def called_back() -> bool:
        return (pay_id, "FAILED") in payouts.receiver.received

    await wait_until(called_back, timeout_s=20)
    final = (await get(payouts.http, key, f"{PAYOUTS_PATH}/{pay_id}")).json()
    assert (final["state"], final["errorCode"]) == ("FAILED", "E015_BANK_REJECTED")
    assert "account frozen" in final["msg"]
    stats = await payouts.bank_stats()
    assert stats["callbacks"]["duplicated"] >= 1, stats  # the bank told us twice...
    await asyncio.sleep(1.0)
    # ...the client hears it once, signed, and the money is back on the payer's account.
    assert payouts.receiver.received.count((pay_id, "FAILED")) == 1
    assert payouts.receiver.bad_signatures == 0
    assert (await balances(payouts.env.pool))[SANDBOX_PAYER] == (5_000, 0)


async def test_scenario_controls_are_checked_and_need_a_key(payouts: PayoutStack) -> None:
    key = (payouts.key_id, payouts.secret)
    bad = await post(payouts.http, key, SCENARIOS, {"requestId": "r1", "outcome": "LOST"})
    assert refusal(bad)[:2] == (400, "E001")
    assert "outcome" in bad.json()["msg"]
    extra = await post(
        payouts.http, key, SCENARIOS, {"requestId": "r1", "outcome": "FAILED", "x": 1}
    )
    assert refusal(extra)[:2] == (400, "E001")
    anonymous = await payouts.http.post(SCENARIOS, json={"requestId": "r1", "outcome": "FAILED"})
    assert anonymous.status_code == 401


async def test_a_live_key_gets_no_scenario_controls_and_no_sandbox_objects(
    payouts: PayoutStack, live: Service, live_key: tuple[str, str]
) -> None:
    key = live_key
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as http:
        scenario = {"requestId": "live-1", "outcome": "FAILED"}
        control = await post(http, key, SCENARIOS, scenario)
        unknown = await post(http, key, "/v1/sandbox/no-such-route", scenario)
        assert control.status_code == 404
        assert control.content == unknown.content
        assert headers_of(control) == headers_of(unknown)

        # A sandbox payout is not there for a live key, exactly like a payId never made.
        sandbox_key = (payouts.key_id, payouts.secret)
        made = await post(
            payouts.http, sandbox_key, PAYOUTS_PATH, payout_body("sbx-seen", SANDBOX_PAYER, 1)
        )
        pay_id = made.json()["payId"]
        seen = await get(http, key, f"{PAYOUTS_PATH}/{pay_id}")
        never = await get(http, key, f"{PAYOUTS_PATH}/PAY20200101{'9' * 10}")
        assert seen.status_code == never.status_code == 404
        assert seen.json()["msg"].replace(pay_id, "") == never.json()["msg"].replace(
            f"PAY20200101{'9' * 10}", ""
        )
        # And the sandbox key itself is unknown to the live gateway.
        stranger = await get(http, sandbox_key, f"{PAYOUTS_PATH}/{pay_id}")
        assert refusal(stranger)[:2] == (401, "E002")


async def test_a_sandbox_key_cannot_see_live_objects(
    payouts: PayoutStack, live: Service, live_env: ModuleEnv, live_key: tuple[str, str]
) -> None:
    key = live_key
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as http:
        made = await post(http, key, PAYOUTS_PATH, payout_body("live-real", SANDBOX_PAYER, 1))
        assert made.status_code == 202, made.text
    pay_id = made.json()["payId"]
    sandbox_key = (payouts.key_id, payouts.secret)
    # Each database numbers its own payIds, so the sandbox may hold one of the same number:
    # then it is the sandbox's own payout, never the live one.
    by_id = await get(payouts.http, sandbox_key, f"{PAYOUTS_PATH}/{pay_id}")
    if by_id.status_code == 404:
        assert refusal(by_id)[:2] == (404, "E009_NOT_FOUND")
    else:
        assert by_id.json()["requestId"] != "live-real"
    by_request = await get(payouts.http, sandbox_key, PAYOUTS_PATH, requestId="live-real")
    assert refusal(by_request)[:2] == (404, "E009_NOT_FOUND")
    # The live payout is in the live database only.
    query = "SELECT count(*) FROM payout_requests WHERE request_id = 'live-real'"
    assert await live_env.pool.fetchval(query) == 1
    assert await payouts.env.pool.fetchval(query) == 0
