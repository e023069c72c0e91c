"""Sub-merchants end to end: POST /v1/merchants -> payment-worker -> the depository (the bank
simulator) -> its signed results at /callbacks/bank -> the merchant's state, and every change
delivered signed to notifyUrl by the callback dispatcher.

Real processes: gateway, notify-ingest (credits a merchant's account from a signed transfer
notification), payment-worker, callback-dispatcher and the bank simulator (reviews in 100-400
ms; a name starting with REJECT is refused).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web
from support.api import signed_get, signed_headers
from support.env import ModuleEnv
from support.merchants import account, individual, materials, registration
from support.platform import Tenant, make_tenant
from support.processes import Service, WithArguments, free_port, gateway, notify_ingest
from support.receivers import ALLOW_LOCAL_RECEIVERS, SignedCallbacks, serving

from e2e.conftest import wait_until
from fundhub.bank_simulator.notifications import TransferSpec, build_notification
from fundhub.bank_simulator.sender import callback_url

MERCHANTS = "/v1/merchants"


@dataclass
class Received(SignedCallbacks):
    """The tenant's notifyUrl: every callback, and whether its signature held."""

    events: list[dict[str, Any]] = field(default_factory=list)

    def took(self, body: dict[str, Any]) -> None:
        self.events.append(body)

    def of(self, merchant_id: str) -> list[str]:
        return [e["event"] for e in self.events if e["merchantId"] == merchant_id]


@dataclass
class MerchantStack:
    env: ModuleEnv
    http: httpx.AsyncClient
    sim: Service
    worker: Service
    tenant: Tenant
    other: Tenant
    received: Received
    notify_url: str

    async def call(
        self, method: str, path: str, body: Any = None, tenant: Tenant | None = None
    ) -> httpx.Response:
        who = tenant or self.tenant
        raw = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
        headers = signed_headers(who.key_id, who.secret, method, path, None, raw)
        headers["Content-Type"] = "application/json"
        return await self.http.request(method, path, content=raw, headers=headers)

    async def get(self, merchant_id: str, tenant: Tenant | None = None) -> httpx.Response:
        who = tenant or self.tenant
        return await signed_get(self.http, who.key_id, who.secret, f"{MERCHANTS}/{merchant_id}")

    async def register(self, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.call("POST", MERCHANTS, {**body, "notifyUrl": self.notify_url})
        assert response.status_code == 202, response.text
        merchant: dict[str, Any] = response.json()
        return merchant

    async def until(self, merchant_id: str, check: Any, timeout_s: float = 20) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        async def probe() -> bool:
            nonlocal seen
            seen = (await self.get(merchant_id)).json()
            return bool(check(seen))

        try:
            await wait_until(probe, timeout_s=timeout_s)
        except AssertionError:
            raise AssertionError(f"not reached; last seen: {seen}") from None
        return seen

    async def active(self, name: str = "Acme Trading") -> dict[str, Any]:
        created = await self.register(registration(f"M-{uuid.uuid4().hex[:10]}", name))
        return await self.until(created["merchantId"], lambda m: m["state"] == "ACTIVE")

    async def deposit(self, merchant_id: str) -> int:
        response = await self.http.get(
            f"{self.sim.url}/depository/v1/simulator/micro-deposits/{merchant_id}"
        )
        assert response.status_code == 200, response.text
        amount: int = response.json()["amount"]
        return amount


def bank_simulator(env: ModuleEnv, gateway_url: str) -> Service:
    port = free_port()
    key_file = env.tmp / f"bank-private-{port}.pem"
    key_file.write_text(env.bank.private_pem)
    return WithArguments(env, "bank-simulator", "fundhub-bank-simulator", port, [
        "--port", str(port), "--gateway-url", gateway_url, "--app-id", env.app_id,
        "--private-key-file", str(key_file), "--retries", "5", "--retry-interval", "0.5",
        "--depository-review-delay", "100,400",
    ])  # fmt: skip


@pytest.fixture(scope="module")
async def stack(env: ModuleEnv) -> AsyncIterator[MerchantStack]:
    env.register_bank_app()
    gw, ingest = gateway(env, **ALLOW_LOCAL_RECEIVERS), notify_ingest(env)
    sim = bank_simulator(env, gw.url)
    worker_port, dispatcher_port = free_port(), free_port()
    worker = Service(
        env, "payment-worker", "fundhub-payment-worker", worker_port,
        FUNDHUB_PAYMENT_WORKER_PORT=str(worker_port), FUNDHUB_BANK_BASE_URL=sim.url,
        FUNDHUB_BANK_TIMEOUT_S="2", FUNDHUB_PAYOUT_NOTIFY_URL=callback_url(gw.url),
        FUNDHUB_PAYOUT_POLL_INTERVAL_S="0.5", FUNDHUB_MERCHANT_POLL_BASE_S="3",
    )  # fmt: skip
    dispatcher = Service(
        env, "callback-dispatcher", "fundhub-callback-dispatcher", dispatcher_port,
        FUNDHUB_CALLBACK_DISPATCHER_PORT=str(dispatcher_port),
        FUNDHUB_CALLBACK_BACKOFF_BASE_S="0.2", FUNDHUB_CALLBACK_BACKOFF_MAX_S="1",
        **ALLOW_LOCAL_RECEIVERS,
    )  # fmt: skip
    services = [gw, ingest, sim, worker, dispatcher]
    received = Received()
    app = web.Application()
    app.router.add_post("/merchant-events", received.handle)
    for service in services:
        service.start()
    try:
        await asyncio.gather(*(s.wait_ready() for s in services))
        scopes = "merchants:write,merchants:read,balance:read"
        # mine is not given any merchant's account.
        mine = make_tenant(env, "merchants", scopes, "6222000999000001")
        theirs = make_tenant(env, "merchants", scopes, "6222000999000002")
        received.secret = mine.webhook_secret
        async with serving(app) as url, httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
            yield MerchantStack(
                env, http, sim, worker, mine, theirs, received, f"{url}/merchant-events"
            )
    finally:
        for service in reversed(services):
            service.stop()


async def test_a_merchant_is_reviewed_active_and_its_balance_readable_by_its_owner(
    stack: MerchantStack,
) -> None:
    merchant_no = f"M-{uuid.uuid4().hex[:10]}"
    created = await stack.register(registration(merchant_no))
    assert (created["state"], created["bizCode"], created["statusCode"]) == (
        "PENDING_REVIEW",
        "PROCESSING",
        202,
    )
    merchant_id, account_id = created["merchantId"], created["accountId"]
    assert created["merchantNo"] == merchant_no and account_id.startswith("mac_")
    assert created["materials"]["legalPerson"]["idNumber"].startswith("****")
    active = await stack.until(merchant_id, lambda m: m["state"] == "ACTIVE", timeout_s=10)
    assert (active["bizCode"], active["versionInForce"], active["memberNo"] is not None) == (
        "SUCCESS",
        1,
        True,
    )
    # The same body again: the same merchant (now reviewed: 200); another body: 409 E010.
    body = {**registration(merchant_no), "notifyUrl": stack.notify_url}
    again = await stack.call("POST", MERCHANTS, body)
    assert again.status_code == 200 and again.json()["merchantId"] == merchant_id
    conflict = await stack.call("POST", MERCHANTS, {**body, "name": "Another"})
    assert (
        conflict.status_code == 409 and conflict.json()["errorCode"] == "E010_IDEMPOTENCY_CONFLICT"
    )
    found = await signed_get(
        stack.http,
        stack.tenant.key_id,
        stack.tenant.secret,
        MERCHANTS,
        [("merchantNo", merchant_no)],
    )
    assert found.status_code == 200 and found.json()["merchantId"] == merchant_id

    path = f"/v1/accounts/{account_id}/balance"
    balance = await signed_get(stack.http, stack.tenant.key_id, stack.tenant.secret, path)
    assert balance.status_code == 200, balance.text
    b = balance.json()
    assert (b["available"], b["frozen"], b["pending"]) == (0, 0, 0)
    foreign = await signed_get(stack.http, stack.other.key_id, stack.other.secret, path)
    assert foreign.status_code == 403 and foreign.json()["errorCode"] == "E008_ACCOUNT_FORBIDDEN"


async def test_a_name_starting_with_reject_is_rejected_with_the_banks_reason(
    stack: MerchantStack,
) -> None:
    created = await stack.register(individual(f"M-{uuid.uuid4().hex[:10]}", "REJECT test shop"))
    rejected = await stack.until(created["merchantId"], lambda m: m["state"] == "REJECTED")
    assert (rejected["bizCode"], rejected["errorCode"]) == ("FAILED", "E053_MERCHANT_REJECTED")
    assert "refusal list" in rejected["msg"] and rejected["reason"] == rejected["msg"]
    assert rejected["versions"][0]["state"] == "REJECTED"


async def test_a_material_change_is_reviewed_while_the_merchant_keeps_trading(
    stack: MerchantStack,
) -> None:
    merchant = await stack.active()
    merchant_id = merchant["merchantId"]
    path = f"{MERCHANTS}/{merchant_id}/materials"
    changed = await stack.call("POST", path, materials("Acme Trading Ltd"))
    assert changed.status_code == 202, changed.text
    during = changed.json()
    assert (during["state"], during["versionInForce"], during["materials"]["name"]) == (
        "ACTIVE",
        1,
        "Acme Trading",
    )
    assert [(v["version"], v["state"]) for v in during["versions"]] == [
        (2, "PENDING_REVIEW"),
        (1, "APPROVED"),
    ]
    busy = await stack.call("POST", path, materials("Yet Another Name"))
    assert busy.status_code == 409 and busy.json()["errorCode"] == "E052_MERCHANT_STATE_CONFLICT"
    approved = await stack.until(merchant_id, lambda m: m["versionInForce"] == 2)
    assert approved["materials"]["name"] == "Acme Trading Ltd"
    refused = await stack.call("POST", path, materials("REJECT this version"))
    assert refused.status_code == 202
    after = await stack.until(merchant_id, lambda m: m["versions"][0]["state"] == "REJECTED")
    assert (after["state"], after["versionInForce"], after["versionCount"]) == ("ACTIVE", 2, 3)
    assert [v["state"] for v in after["versions"]] == ["REJECTED", "APPROVED", "APPROVED"]


async def test_a_settlement_account_is_verified_by_micro_deposit(stack: MerchantStack) -> None:
    merchant_id = (await stack.active())["merchantId"]
    path = f"{MERCHANTS}/{merchant_id}/settlement-account"

    async def awaiting() -> dict[str, Any]:
        return await stack.until(
            merchant_id,
            lambda m: (
                m["settlementAccounts"]
                and m["settlementAccounts"][0]["state"] == "AWAITING_CONFIRMATION"
            ),
        )

    async def verify(amount: int) -> httpx.Response:
        return await stack.call("POST", f"{path}/verify", {"amount": amount})

    # First account: five wrong amounts fail it.
    assert (await stack.call("POST", path, account("6222020200000000001"))).status_code == 202
    await awaiting()
    right = await stack.deposit(merchant_id)
    wrong = right % 50 + 1
    for attempt in range(1, 6):
        answer = await verify(wrong)
        assert answer.status_code == 202, answer.text
        if attempt < 5:
            seen = await awaiting()
            assert seen["settlementAccounts"][0]["attemptsLeft"] == 5 - attempt
    failed = await stack.until(
        merchant_id, lambda m: m["settlementAccounts"][0]["state"] == "FAILED"
    )
    assert failed["settlementAccount"] is None
    late = await verify(right)
    assert late.status_code == 409 and late.json()["errorCode"] == "E052_MERCHANT_STATE_CONFLICT"

    # Second account: the right amount verifies it; it becomes the withdrawal account.
    assert (await stack.call("POST", path, account("6222020200000000002"))).status_code == 202
    await awaiting()
    assert (await verify(await stack.deposit(merchant_id))).status_code == 202
    verified = await stack.until(merchant_id, lambda m: m["settlementAccount"] is not None)
    assert verified["settlementAccount"]["accountNo"] == "****0002"

    # A change of account: the verified one stays in use until the new one is verified.
    assert (await stack.call("POST", path, account("6222020200000000003"))).status_code == 202
    pending = await awaiting()
    assert pending["settlementAccount"]["accountNo"] == "****0002"
    assert (await verify(await stack.deposit(merchant_id))).status_code == 202
    switched = await stack.until(
        merchant_id, lambda m: m["settlementAccount"]["accountNo"] == "****0003"
    )
    assert [a["state"] for a in switched["settlementAccounts"]] == [
        "VERIFIED",
        "REPLACED",
        "FAILED",
    ]


async def test_close_is_refused_with_money_in_the_account_then_confirmed(
    stack: MerchantStack,
) -> None:
    merchant = await stack.active()
    merchant_id, account_id = merchant["merchantId"], merchant["accountId"]
    record = f"m{uuid.uuid4().hex[:20]}"
    spec = TransferSpec(record_id=record, in_acct_no=account_id, trans_amount=1234)
    env = stack.env
    credit = build_notification(spec, env.app_id, env.bank.private_pem)
    assert (await stack.http.post("/callbacks/bank", json=credit)).text == "success"
    path = f"/v1/accounts/{account_id}/balance"

    async def available(amount: int) -> bool:
        response = await signed_get(stack.http, stack.tenant.key_id, stack.tenant.secret, path)
        return bool(response.json().get("available") == amount)

    await wait_until(lambda: available(1234), timeout_s=20)
    close = f"{MERCHANTS}/{merchant_id}/close"
    refused = await stack.call("POST", close)
    assert refused.status_code == 409, refused.text
    assert refused.json()["errorCode"] == "E050_MERCHANT_BALANCE_NOT_ZERO"
    assert (await stack.get(merchant_id)).json()["state"] == "ACTIVE"
    # The bank reverses the credit (冲正): the account is empty again.
    reversal = TransferSpec(
        record_id=record, in_acct_no=account_id, trans_amount=1234, reverse_flag="1"
    )
    notice = build_notification(reversal, env.app_id, env.bank.private_pem)
    assert (await stack.http.post("/callbacks/bank", json=notice)).text == "success"
    await wait_until(lambda: available(0), timeout_s=20)
    closing = await stack.call("POST", close)
    assert closing.status_code == 202 and closing.json()["state"] == "CLOSING"
    closed = await stack.until(merchant_id, lambda m: m["state"] == "CLOSED")
    assert closed["bizCode"] == "SUCCESS"
    again = await stack.call("POST", close)
    assert again.status_code == 409 and again.json()["errorCode"] == "E052_MERCHANT_STATE_CONFLICT"


async def test_another_tenants_merchant_answers_exactly_as_a_missing_one(
    stack: MerchantStack,
) -> None:
    merchant_id = (await stack.active())["merchantId"]
    missing = "mch_" + "0" * 26

    def shape(response: httpx.Response) -> tuple[int, str, str]:
        body = response.json()
        return response.status_code, body["errorCode"], body["msg"].replace(missing, "ID")

    def theirs_shape(response: httpx.Response) -> tuple[int, str, str]:
        body = response.json()
        return response.status_code, body["errorCode"], body["msg"].replace(merchant_id, "ID")

    for method, suffix, body in (
        ("GET", "", None),
        ("POST", "/materials", materials("Hijack")),
        ("POST", "/settlement-account", account()),
        ("POST", "/settlement-account/verify", {"amount": 1}),
        ("POST", "/close", None),
    ):
        theirs = await stack.call(method, f"{MERCHANTS}/{merchant_id}{suffix}", body, stack.other)
        absent = await stack.call(method, f"{MERCHANTS}/{missing}{suffix}", body, stack.other)
        assert (
            theirs_shape(theirs)
            == shape(absent)
            == (404, "E009_NOT_FOUND", "merchant ID not found")
        )
    assert (await stack.get(merchant_id)).json()["state"] == "ACTIVE"  # nothing changed


async def test_a_killed_worker_loses_and_doubles_nothing(stack: MerchantStack) -> None:
    """SIGKILL payment-worker while merchants are in review: after its restart every one is
    decided once, and told once."""
    created = await asyncio.gather(
        *(stack.register(registration(f"K-{uuid.uuid4().hex[:10]}")) for _ in range(20))
    )
    stack.worker.kill()
    more = await asyncio.gather(
        *(stack.register(registration(f"K-{uuid.uuid4().hex[:10]}")) for _ in range(10))
    )
    stack.worker.start()
    await stack.worker.wait_ready()
    ids = [m["merchantId"] for m in (*created, *more)]
    for merchant_id in ids:
        await stack.until(merchant_id, lambda m: m["state"] == "ACTIVE", timeout_s=60)
    rows = await stack.env.pool.fetch(
        "SELECT merchant_id, count(*) AS requests, count(*) FILTER (WHERE state = 'DONE') AS done"
        " FROM merchant_requests WHERE merchant_id = ANY($1::text[]) GROUP BY merchant_id",
        ids,
    )
    assert len(rows) == len(ids)
    assert {(r["requests"], r["done"]) for r in rows} == {(1, 1)}

    async def each_told_once() -> bool:
        counted = await stack.env.pool.fetch(
            "SELECT count(*) AS n FROM callback_deliveries WHERE pay_id = ANY($1::text[])"
            " GROUP BY pay_id",
            ids,
        )
        return len(counted) == len(ids) and {r["n"] for r in counted} == {1}

    await wait_until(each_told_once, timeout_s=30)


async def test_every_change_was_called_back_signed(stack: MerchantStack) -> None:
    """Runs last: by now every kind of change above has been delivered to notifyUrl."""

    async def delivered() -> bool:
        kinds = {e["event"] for e in stack.received.events}
        return {
            "MERCHANT_APPROVED",
            "MERCHANT_REJECTED",
            "MATERIALS_APPROVED",
            "MATERIALS_REJECTED",
            "SETTLEMENT_ACCOUNT_DEPOSIT_SENT",
            "SETTLEMENT_ACCOUNT_AMOUNT_MISMATCH",
            "SETTLEMENT_ACCOUNT_FAILED",
            "SETTLEMENT_ACCOUNT_VERIFIED",
            "MERCHANT_CLOSED",
        } <= kinds

    await wait_until(delivered, timeout_s=30)
    assert stack.received.bad_signatures == 0
    for event in stack.received.events:
        text = json.dumps(event, ensure_ascii=False)
        assert "110101199003074573" not in text and "13800138000" not in text
    ids = [(e["merchantId"], e["eventId"]) for e in stack.received.events]
    # At least once: a copy may come again after a crash, never a different event under an id.
    assert len(set(ids)) <= len(ids)
