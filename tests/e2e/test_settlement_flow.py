"""Settlement and withdrawals end to end: the gateway, payment-worker (its scheduler and split
results' consumer), the bank simulator (its split desk and payout API) and the callback
dispatcher as real processes.

Orders and merchants are written into the database as their contexts write them
(``support.settlement_world``); everything after that goes through the running services.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from aiohttp import web
from support.api import signed_get, signed_headers
from support.env import ModuleEnv
from support.ledger import assert_ledger_invariants
from support.processes import free_port
from support.settlement_services import settlement_services
from support.settlement_world import (
    Merchant,
    buckets,
    credit_available,
    merchant,
    paid_order,
    pending_refund,
    refund_before_settlement,
)

from e2e.conftest import wait_until
from fundhub.common.clock import utcnow
from fundhub.common.signing import webhook_signature

SCOPES = "orders:write,orders:read,merchants:write,merchants:read,balance:read"


class Callbacks:
    """The platform's notifyUrl: every signed callback it is sent, by path."""

    def __init__(self) -> None:
        self.port = free_port()
        self.webhook_secret = ""
        self.received: list[dict[str, Any]] = []
        self.bad_signatures = 0
        self._runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        expected = webhook_signature(
            self.webhook_secret, request.headers.get("X-Fundhub-Timestamp", ""), body
        )
        if request.headers.get("X-Fundhub-Signature") != expected:
            self.bad_signatures += 1
        self.received.append({"path": request.path, **json.loads(body)})
        return web.Response(text="ok")

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [b for b in self.received if b["path"] == f"/{path}"]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@dataclass
class Stack:
    env: ModuleEnv
    http: httpx.AsyncClient
    bank_url: str
    key_id: str
    secret: str
    other_key_id: str
    other_secret: str
    callbacks: Callbacks

    async def post(
        self, path: str, body: dict[str, Any] | None = None, *, other: bool = False
    ) -> httpx.Response:
        key, secret = (
            (self.other_key_id, self.other_secret) if other else (self.key_id, self.secret)
        )
        raw = b"" if body is None else json.dumps(body).encode()
        headers = signed_headers(key, secret, "POST", path, None, raw)
        headers["Content-Type"] = "application/json"
        return await self.http.post(path, content=raw, headers=headers)

    async def get(self, path: str) -> httpx.Response:
        return await signed_get(self.http, self.key_id, self.secret, path)

    async def merchant(self, name: str, **options: Any) -> Merchant:
        return await merchant(self.env.pool, self.key_id, name, **options)

    async def split_desk(self, **behaviour: Any) -> None:
        """The simulated depository's split desk: its delay, whether it notifies."""
        answer = await self.http.post(
            f"{self.bank_url}/depository/v1/split-desk/behaviour", json=behaviour
        )
        assert answer.status_code == 200, answer.text

    async def balance(self, account_id: str) -> tuple[int, int, int]:
        answer = await self.get(f"/v1/accounts/{account_id}/balance")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        return body["available"], body["frozen"], body["pending"]


@pytest.fixture(scope="module")
async def stack(env: ModuleEnv) -> AsyncIterator[Stack]:
    made = settlement_services(env)
    gw, sim = made.gateway, made.bank
    services = [gw, sim, made.worker, made.dispatcher]
    callbacks = Callbacks()
    await callbacks.start()
    for service in services:
        service.start()
    try:
        await asyncio.gather(*(s.wait_ready() for s in services))
        mine = json.loads(
            env.cli("api-key", "create", "--name", "platform", "--scopes", SCOPES,
                    "--accounts", "*", "--json")
        )  # fmt: skip
        other = json.loads(
            env.cli("api-key", "create", "--name", "another", "--scopes", SCOPES,
                    "--accounts", "*", "--json")
        )  # fmt: skip
        callbacks.webhook_secret = mine["webhookSecret"]
        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as http:
            yield Stack(
                env,
                http,
                sim.url,
                mine["keyId"],
                mine["secret"],
                other["keyId"],
                other["secret"],
                callbacks,
            )
    finally:
        for service in reversed(services):
            service.stop()
        await callbacks.stop()


async def settlement_state(stack: Stack, settlement_id: str) -> str:
    state: str = await stack.env.pool.fetchval(
        "SELECT state FROM settlements WHERE settlement_id = $1", settlement_id
    )
    return state


async def wait_state(stack: Stack, settlement_id: str, state: str) -> None:
    async def reached() -> bool:
        return await settlement_state(stack, settlement_id) == state

    await wait_until(reached, timeout_s=30)


# --- confirm-settle ------------------------------------------------------------------------------


async def test_a_confirmed_settlement_moves_pending_to_available(stack: Stack) -> None:
    a, b = await stack.merchant("Acme Ltd"), await stack.merchant("Beta Co")
    notify = stack.callbacks.url("orders/confirmed")
    order = await paid_order(
        stack.env.pool, stack.key_id, [(a, 6000), (b, 3000)], platform_fee=1000, notify_url=notify
    )
    await refund_before_settlement(stack.env.pool, order, [600, 300, 100])
    assert await stack.balance(a.account_id) == (0, 0, 5400)

    path = f"/v1/orders/{order.order_no}/settle"
    await stack.split_desk(delayS=2.0)  # the bank takes its time: refunds meet a live settlement
    first = await stack.post(path)
    assert first.status_code == 202, first.text
    body = first.json()
    assert (body["bizCode"], body["trigger"], body["amount"]) == ("PROCESSING", "CONFIRMED", 9000)
    assert body["state"] in ("PENDING", "PROCESSING")
    assert [p["amount"] for p in body["parts"]] == [5400, 2700, 900]
    again = await stack.post(path)  # while under way: the same settlement, nothing new
    assert again.status_code == 202 and again.json()["settlementId"] == body["settlementId"]
    # While it is under way the order reads SETTLING and its refunds wait (orders' E044).
    shown = (await stack.get(f"/v1/orders/{order.order_no}")).json()
    assert shown["settlement"]["state"] == "SETTLING", shown
    refund = await stack.post(
        f"/v1/orders/{order.order_no}/refunds", {"refundNo": "r-during", "amount": 100}
    )
    assert (refund.status_code, refund.json()["errorCode"]) == (409, "E044_SETTLEMENT_IN_PROGRESS")

    await wait_state(stack, body["settlementId"], "SETTLED")
    assert await stack.balance(a.account_id) == (5400, 0, 0)
    assert await stack.balance(b.account_id) == (2700, 0, 0)
    shown = (await stack.get(f"/v1/orders/{order.order_no}")).json()
    assert shown["settlement"]["state"] == "SETTLED" and shown["settlement"]["settledAt"]
    read = await stack.get(f"/v1/orders/{order.order_no}/settlement")
    assert read.status_code == 200 and read.json()["settlementId"] == body["settlementId"]
    assert (read.json()["state"], read.json()["bizCode"]) == ("SETTLED", "SUCCESS")
    settled = await stack.post(path)
    assert settled.status_code == 409 and settled.json()["errorCode"] == "E040_ORDER_SETTLED"

    async def called_back() -> bool:
        return bool(stack.callbacks.bodies("orders/confirmed"))

    await wait_until(called_back, timeout_s=30)
    (callback,) = stack.callbacks.bodies("orders/confirmed")
    assert (callback["settlementId"], callback["state"], callback["bizCode"]) == (
        body["settlementId"],
        "SETTLED",
        "SUCCESS",
    )
    assert callback["bankSplitId"] and stack.callbacks.bad_signatures == 0
    await assert_ledger_invariants(stack.env.pool)


async def test_a_refused_split_stays_pending_with_the_banks_reason(stack: Stack) -> None:
    await stack.split_desk(delayS=0.2)
    a, b = await stack.merchant("Gamma Ltd"), await stack.merchant("SPLITFAIL Trading")
    notify = stack.callbacks.url("orders/refused")
    order = await paid_order(stack.env.pool, stack.key_id, [(a, 700), (b, 300)], notify_url=notify)
    answer = await stack.post(f"/v1/orders/{order.order_no}/settle")
    assert answer.status_code == 202, answer.text
    sid = answer.json()["settlementId"]
    await wait_state(stack, sid, "REFUSED")
    assert await stack.balance(a.account_id) == (0, 0, 700)
    assert await stack.balance(b.account_id) == (0, 0, 300)

    async def called_back() -> bool:
        return bool(stack.callbacks.bodies("orders/refused"))

    await wait_until(called_back, timeout_s=30)
    (callback,) = stack.callbacks.bodies("orders/refused")
    assert (callback["state"], callback["bizCode"], callback["errorCode"]) == (
        "REFUSED",
        "FAILED",
        "E043_SPLIT_REFUSED",
    )
    assert "SPLITFAIL Trading" in callback["msg"]
    read = (await stack.get(f"/v1/orders/{order.order_no}/settlement")).json()
    assert (read["state"], read["errorCode"], read["msg"]) == (
        "REFUSED",
        "E043_SPLIT_REFUSED",
        callback["msg"],
    )
    # Confirming again after a refusal is a new attempt (refused again by the same rule).
    retry = await stack.post(f"/v1/orders/{order.order_no}/settle")
    assert retry.status_code == 202 and retry.json()["settlementId"] != sid
    await wait_state(stack, retry.json()["settlementId"], "REFUSED")
    await assert_ledger_invariants(stack.env.pool)


async def test_an_order_paid_yesterday_settles_at_its_cutoff_unasked(stack: Stack) -> None:
    (a,) = [await stack.merchant("Yesterday Co")]
    order = await paid_order(
        stack.env.pool, stack.key_id, [(a, 1234)], paid_at=utcnow() - timedelta(days=2)
    )

    async def settled() -> bool:
        return await stack.balance(a.account_id) == (1234, 0, 0)

    await wait_until(settled, timeout_s=30)
    trigger = await stack.env.pool.fetchval(
        "SELECT trigger FROM settlements WHERE order_id = $1", order.order_id
    )
    assert trigger == "SCHEDULED"


async def test_each_refusal_of_a_confirmation_has_its_code(stack: Stack) -> None:
    (a,) = [await stack.merchant("Refusals Ltd")]
    pool = stack.env.pool

    missing = await stack.post("/v1/orders/no-such-order/settle")
    assert (missing.status_code, missing.json()["errorCode"]) == (404, "E009_NOT_FOUND")
    unread = await stack.get("/v1/orders/no-such-order/settlement")
    assert (unread.status_code, unread.json()["errorCode"]) == (404, "E009_NOT_FOUND")

    theirs = await paid_order(pool, stack.other_key_id, [(a, 100)])
    other_tenant = await stack.post(f"/v1/orders/{theirs.order_no}/settle")
    assert (other_tenant.status_code, other_tenant.json()["errorCode"]) == (404, "E009_NOT_FOUND")
    assert other_tenant.json()["msg"] == f"order {theirs.order_no} not found"
    # Their own key settles it; to us its settlement reads as missing too.
    own = await stack.post(f"/v1/orders/{theirs.order_no}/settle", other=True)
    assert own.status_code == 202, own.text
    theirs_read = await stack.get(f"/v1/orders/{theirs.order_no}/settlement")
    assert (theirs_read.status_code, theirs_read.json()["errorCode"]) == (404, "E009_NOT_FOUND")

    unpaid = await paid_order(pool, stack.key_id, [(a, 100)])
    await pool.execute(
        "UPDATE orders SET state = 'AWAITING_PAYMENT', paid_at = NULL WHERE order_id = $1",
        unpaid.order_id,
    )
    answer = await stack.post(f"/v1/orders/{unpaid.order_no}/settle")
    assert (answer.status_code, answer.json()["errorCode"]) == (409, "E034_ORDER_NOT_PAID")

    refunded = await paid_order(pool, stack.key_id, [(a, 100)])
    await refund_before_settlement(pool, refunded, [100])
    answer = await stack.post(f"/v1/orders/{refunded.order_no}/settle")
    assert (answer.status_code, answer.json()["errorCode"]) == (409, "E041_ORDER_FULLY_REFUNDED")

    refunding = await paid_order(pool, stack.key_id, [(a, 100)])
    await pending_refund(pool, refunding, 50)
    answer = await stack.post(f"/v1/orders/{refunding.order_no}/settle")
    assert (answer.status_code, answer.json()["errorCode"]) == (409, "E045_REFUND_IN_PROGRESS")

    narrow = json.loads(
        stack.env.cli("api-key", "create", "--name", "reader", "--scopes", "balance:read",
                      "--accounts", "*", "--json")
    )  # fmt: skip
    headers = signed_headers(narrow["keyId"], narrow["secret"], "POST", "/v1/orders/x/settle")
    answer = await stack.http.post("/v1/orders/x/settle", headers=headers)
    assert (answer.status_code, answer.json()["errorCode"]) == (403, "E007_SCOPE_FORBIDDEN")
    # None of these recorded a settlement.
    refused = [unpaid, refunded, refunding]
    count = await pool.fetchval(
        "SELECT count(*) FROM settlements WHERE order_id = ANY($1::text[])",
        [o.order_id for o in refused],
    )
    assert count == 0


# --- withdrawals --------------------------------------------------------------------------------


def withdrawal_path(merchant_id: str) -> str:
    return f"/v1/merchants/{merchant_id}/withdrawals"


async def test_a_withdrawal_reaches_the_bank_and_completes(stack: Stack) -> None:
    notify = stack.callbacks.url("merchants/withdrawals")
    m = await stack.merchant("Withdrawer Ltd", notify_url=notify, account_no="6222000099998888")
    await credit_available(stack.env.pool, m.account_id, 10_000)
    request_id = f"wd-{uuid.uuid4().hex[:12]}"
    answer = await stack.post(
        withdrawal_path(m.merchant_id), {"requestId": request_id, "amount": 4000}
    )
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert (body["state"], body["merchantId"], body["requestId"]) == (
        "PROCESSING",
        m.merchant_id,
        request_id,
    )
    assert body["payee"]["accountNo"] == "****8888"
    pay_id = body["payId"]

    path = f"{withdrawal_path(m.merchant_id)}/{request_id}"

    async def final() -> bool:
        return (await stack.get(path)).json()["state"] == "SUCCESS"

    await wait_until(final, timeout_s=30)
    done = (await stack.get(path)).json()
    assert (done["statusCode"], done["bizCode"], done["payId"]) == (200, "SUCCESS", pay_id)
    assert await stack.balance(m.account_id) == (6000, 0, 0)
    # The bank paid the verified account.
    async with httpx.AsyncClient() as bank:
        transfer = (await bank.get(f"{stack.bank_url}/bank/v1/transfers/{pay_id}")).json()
    assert transfer["status"] == "SUCCESS"
    # The same request again is the same withdrawal; another amount under it is refused.
    repeat = await stack.post(
        withdrawal_path(m.merchant_id), {"requestId": request_id, "amount": 4000}
    )
    assert (repeat.status_code, repeat.json()["payId"]) == (200, pay_id)
    conflict = await stack.post(
        withdrawal_path(m.merchant_id), {"requestId": request_id, "amount": 1}
    )
    assert (conflict.status_code, conflict.json()["errorCode"]) == (
        409,
        "E010_IDEMPOTENCY_CONFLICT",
    )

    async def called_back() -> bool:
        return bool(stack.callbacks.bodies("merchants/withdrawals"))

    await wait_until(called_back, timeout_s=30)
    (callback,) = stack.callbacks.bodies("merchants/withdrawals")
    assert (callback["payId"], callback["state"]) == (pay_id, "SUCCESS")
    assert callback["extension"]["merchantId"] == m.merchant_id
    assert callback["extension"]["withdrawalRequestId"] == request_id
    await assert_ledger_invariants(stack.env.pool)


async def test_each_refusal_of_a_withdrawal_has_its_code(stack: Stack) -> None:
    unverified = await stack.merchant("No Card Co", verified=False)
    await credit_available(stack.env.pool, unverified.account_id, 500)
    answer = await stack.post(
        withdrawal_path(unverified.merchant_id), {"requestId": "r1", "amount": 100}
    )
    assert (answer.status_code, answer.json()["errorCode"]) == (409, "E042_NO_VERIFIED_ACCOUNT")

    poor = await stack.merchant("Poor Co")
    await credit_available(stack.env.pool, poor.account_id, 500)
    answer = await stack.post(withdrawal_path(poor.merchant_id), {"requestId": "r2", "amount": 501})
    assert (answer.status_code, answer.json()["errorCode"]) == (422, "E004_INSUFFICIENT_FUNDS")

    closed = await stack.merchant("Closed Co", state="CLOSED")
    answer = await stack.post(withdrawal_path(closed.merchant_id), {"requestId": "r3", "amount": 1})
    assert (answer.status_code, answer.json()["errorCode"]) == (422, "E032_MERCHANT_NOT_ACTIVE")

    theirs = await merchant(stack.env.pool, stack.other_key_id, "Their Co")
    await credit_available(stack.env.pool, theirs.account_id, 500)
    answer = await stack.post(withdrawal_path(theirs.merchant_id), {"requestId": "r4", "amount": 1})
    missing = await stack.post(withdrawal_path("mch_nobody"), {"requestId": "r4", "amount": 1})
    assert (answer.status_code, answer.json()["errorCode"]) == (404, "E009_NOT_FOUND")
    assert (missing.status_code, missing.json()["errorCode"]) == (404, "E009_NOT_FOUND")

    for bad in ({"requestId": "r5", "amount": 1.0}, {"requestId": "r5"}, {"amount": 5},
                {"requestId": "r5", "amount": 5, "extra": 1}):  # fmt: skip
        answer = await stack.post(withdrawal_path(poor.merchant_id), bad)
        assert (answer.status_code, answer.json()["errorCode"]) == (400, "E001"), bad
    # Nothing was paid out, frozen or posted for any of them.
    for m in (unverified, poor, theirs):
        assert (await buckets(stack.env.pool, m.account_id))[:2] == (500, 0)
    count = await stack.env.pool.fetchval(
        "SELECT count(*) FROM payouts WHERE payer_account_id = ANY($1::text[])",
        [unverified.account_id, poor.account_id, closed.account_id, theirs.account_id],
    )
    assert count == 0
