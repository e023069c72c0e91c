"""Orders end to end, every part a real process: the gateway (orders created with their
payment's parameters, from the channel simulator through the channels' adapters, registered
with the bank simulator's depository), the channel simulator (the payer pays; its signed, and
for WeChat Pay encrypted, notifications to the gateway's channel routes), notify-ingest (paid
into the receivers' pending), payment-worker (refunds held and sent to the channel, finished by
its notice or answer) and the callback dispatcher (each final state, signed, to notifyUrl).
Refusals answer their codes and write nothing. Keys are TEST keys made per run."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from support.api import signed_get, signed_headers
from support.channels import MerchantKeys, cli_add_args, serve_on_simulator
from support.env import ModuleEnv
from support.ledger import assert_ledger_invariants
from support.merchants import Merchant, add_merchant
from support.order_world import order_json
from support.processes import Service, channel_simulator, free_port, gateway, notify_ingest
from support.receivers import ALLOW_LOCAL_RECEIVERS, serving

from e2e.conftest import wait_until
from fundhub.channel_simulator.main import write_keys
from fundhub.common.signing import webhook_signature
from fundhub.ledger.rules import system_account

SCOPES = "orders:write,orders:read,balance:read"


@dataclass
class Receiver:
    """The platform's notifyUrl: every callback it is sent, and whether its signature held."""

    secret: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    bad: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        timestamp = request.headers.get("X-Fundhub-Timestamp", "")
        if request.headers.get("X-Fundhub-Signature") != webhook_signature(
            self.secret, timestamp, body
        ):
            self.bad += 1
        self.received.append(json.loads(body))
        return web.Response(text="ok")


@dataclass
class Orders:
    env: ModuleEnv
    http: httpx.AsyncClient
    gateway: Service
    simulator: Service
    receiver: Receiver
    notify_url: str
    key: tuple[str, str]
    other: tuple[str, str]
    a: Merchant
    b: Merchant
    bank_url: str = ""  # the bank simulator (the depository, its daily files)

    async def post(
        self, path: str, body: Any, key: tuple[str, str] | None = None
    ) -> httpx.Response:
        raw = json.dumps(body).encode()
        headers = signed_headers(*(key or self.key), "POST", path, None, raw)
        headers["Content-Type"] = "application/json"
        return await self.http.post(f"{self.gateway.url}{path}", content=raw, headers=headers)

    async def get(self, path: str, key: tuple[str, str] | None = None) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.gateway.url, timeout=30) as client:
            return await signed_get(client, *(key or self.key), path)

    async def order(self, order_no: str) -> dict[str, Any]:
        response = await self.get(f"/v1/orders/{order_no}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def pending(self, account_id: str) -> int:
        response = await self.get(f"/v1/accounts/{account_id}/balance")
        assert response.status_code == 200, response.text
        return int(response.json()["pending"])

    async def pay(self, order: dict[str, Any]) -> None:
        """The payer pays at the channel; its notification follows."""
        channel = order["channel"].lower()
        answer = await self.http.post(f"{self.simulator.url}/sim/{channel}/pay/{order['orderId']}")
        assert answer.status_code == 200, answer.text


def _key(env: ModuleEnv, name: str) -> tuple[str, str, str]:
    created = json.loads(
        env.cli(
            "api-key", "create", "--name", name, "--scopes", SCOPES, "--accounts", "*", "--json"
        )
    )
    return created["keyId"], created["secret"], created["webhookSecret"]


def _bank_simulator(env: ModuleEnv) -> Service:
    port = free_port()
    key_file = env.tmp / f"bank-private-{port}.pem"
    key_file.write_text(env.bank.private_pem)
    arguments = ("--port", str(port), "--gateway-url", "http://127.0.0.1:9", "--app-id",
                 env.app_id, "--private-key-file", str(key_file))  # fmt: skip
    return Service(env, "bank-simulator", "fundhub-bank-simulator", port, arguments)


@pytest.fixture(scope="module")
async def orders(env: ModuleEnv) -> AsyncIterator[Orders]:
    env.register_bank_app()
    key_id, secret, webhook_secret = _key(env, "platform")
    other_id, other_secret, _ = _key(env, "another platform")
    keys_dir: Path = env.tmp / "channel-sim"
    write_keys(keys_dir)
    simulator = channel_simulator(
        env, "--keys-dir", str(keys_dir), "--time-factor", "0.001", "--refund-delay", "20,100"
    )
    bank = _bank_simulator(env)
    simulator.start()
    bank.start()
    await asyncio.gather(simulator.wait_ready(), bank.wait_ready())
    gw = gateway(
        env,
        FUNDHUB_BANK_BASE_URL=bank.url,
        FUNDHUB_WECHATPAY_BASE_URL=simulator.url,
        FUNDHUB_ALIPAY_GATEWAY_URL=f"{simulator.url}/gateway.do",
        **ALLOW_LOCAL_RECEIVERS,
    )
    channels_env = {
        "FUNDHUB_WECHATPAY_BASE_URL": simulator.url,
        "FUNDHUB_ALIPAY_GATEWAY_URL": f"{simulator.url}/gateway.do",
        "FUNDHUB_CHANNEL_NOTIFY_BASE_URL": gw.url,
        "FUNDHUB_BANK_BASE_URL": bank.url,
    }
    port = free_port()
    worker = Service(
        env,
        "payment-worker",
        "fundhub-payment-worker",
        port,
        FUNDHUB_PAYMENT_WORKER_PORT=str(port),
        FUNDHUB_REFUND_POLL_BASE_S="0.5",
        FUNDHUB_REFUND_POLL_MAX_S="2",
        FUNDHUB_SETTLEMENT_POLL_BASE_S="0.5",
        FUNDHUB_SETTLEMENT_POLL_MAX_S="2",
        **channels_env,
    )
    port = free_port()
    dispatcher = Service(
        env,
        "callback-dispatcher",
        "fundhub-callback-dispatcher",
        port,
        FUNDHUB_CALLBACK_DISPATCHER_PORT=str(port),
        FUNDHUB_CALLBACK_BACKOFF_BASE_S="0.2",
        FUNDHUB_CALLBACK_BACKOFF_MAX_S="1",
        **ALLOW_LOCAL_RECEIVERS,
    )
    services = [gw, notify_ingest(env), worker, dispatcher]
    receiver = Receiver(secret=webhook_secret)
    app = web.Application()
    app.router.add_post("/order-callbacks", receiver.handle)
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            merchant = MerchantKeys()
            sim_keys = await serve_on_simulator(http, simulator.url, merchant)
            for args in cli_add_args(env.tmp, merchant, sim_keys):
                env.cli(*args)
            for service in services:
                service.start()
            await asyncio.gather(*(s.wait_ready() for s in services))
            a = await add_merchant(env.pool, key_id)
            b = await add_merchant(env.pool, key_id)
            async with serving(app) as receiver_url:
                yield Orders(
                    env,
                    http,
                    gw,
                    simulator,
                    receiver,
                    f"{receiver_url}/order-callbacks",
                    (key_id, secret),
                    (other_id, other_secret),
                    a,
                    b,
                    bank.url,
                )
    finally:
        for service in [*reversed(services), bank, simulator]:
            service.stop()


async def _counts(env: ModuleEnv) -> tuple[int, int, int]:
    row = await env.pool.fetchrow(
        "SELECT (SELECT count(*) FROM orders) AS o, (SELECT count(*) FROM order_refunds) AS r,"
        " (SELECT count(*) FROM journal_entries) AS j"
    )
    assert row is not None
    return row["o"], row["r"], row["j"]


@pytest.mark.parametrize("channel", ["WECHATPAY", "ALIPAY"])
async def test_an_order_is_created_paid_refunded_and_every_final_state_called_back(
    orders: Orders, channel: str
) -> None:
    order_no = f"SO-{uuid.uuid4().hex[:10]}"
    body = order_json(
        order_no,
        [(orders.a, 6_000), (orders.b, 3_000)],
        1_000,
        channel=channel,
        notifyUrl=orders.notify_url,
    )
    created = await orders.post("/v1/orders", body)
    assert created.status_code == 200, created.text
    assert created.headers.get("X-Signature") and created.headers["Cache-Control"] == "no-store"
    order = created.json()
    assert order["state"] == "AWAITING_PAYMENT" and order["bizCode"] == "PROCESSING"
    params = order["payment"]["params"]
    assert params.get("code_url") or params.get("qr_code"), params
    assert order["settlement"] == {"state": "UNSETTLED", "settledAt": None}
    # The same request again (an answer that never arrived): the same order.
    again = await orders.post("/v1/orders", body)
    assert again.status_code == 200 and again.json()["orderId"] == order["orderId"]
    assert again.json()["payment"]["params"] == params

    pending_a = await orders.pending(orders.a.account_id)
    clearing = system_account(f"{channel.lower()}-clearing", "CNY")
    await orders.pay(order)

    async def is_paid() -> bool:
        return bool((await orders.order(order_no))["state"] == "PAID")

    await wait_until(is_paid)
    assert await orders.pending(orders.a.account_id) == pending_a + 6_000
    read = await orders.order(order_no)
    assert read["bizCode"] == "SUCCESS" and read["payment"]["transactionId"]

    refund = await orders.post(
        f"/v1/orders/{order_no}/refunds", {"refundNo": "RF-1", "amount": 5_000}
    )
    assert refund.status_code == 202, refund.text
    answer = refund.json()
    assert answer["state"] == "PROCESSING" and answer["bizCode"] == "PROCESSING"
    assert [s["amount"] for s in answer["splits"]] == [3_000, 1_500]
    assert answer["platformFee"] == 500

    async def refunded() -> bool:
        return bool((await orders.order(order_no))["refunds"][0]["state"] == "SUCCESS")

    await wait_until(refunded)
    read = await orders.order(order_no)
    assert read["refundedAmount"] == 5_000 and read["refunds"][0]["takenFrom"] == "pending"
    assert "depositoryDebit" not in read["refunds"][0]  # before the split: nothing to debit
    assert await orders.pending(orders.a.account_id) == pending_a + 3_000
    replay = await orders.post(
        f"/v1/orders/{order_no}/refunds", {"refundNo": "RF-1", "amount": 5_000}
    )
    assert replay.status_code == 200 and replay.json()["state"] == "SUCCESS"
    postings = await orders.env.pool.fetchval(
        "SELECT coalesce(sum(p.amount), 0) FROM postings p JOIN journal_entries j USING (entry_id)"
        " WHERE p.account_id = $1 AND j.ref_id = ANY($2::text[])",
        clearing,
        [order["orderId"], answer["refundId"]],
    )
    assert postings == -(10_000 - 5_000)  # the channel's clearing: paid less refunded

    async def called_back() -> bool:
        seen = {(c.get("refundId") or c["orderId"], c["state"]) for c in orders.receiver.received}
        return {(order["orderId"], "PAID"), (answer["refundId"], "SUCCESS")} <= seen

    await wait_until(called_back)
    assert orders.receiver.bad == 0
    exceptions = await orders.env.pool.fetchval(
        "SELECT count(*) FROM order_exceptions WHERE out_trade_no = $1", order["orderId"]
    )
    assert exceptions == 0
    await assert_ledger_invariants(orders.env.pool)


async def test_refusals_answer_their_code_and_write_nothing(orders: Orders) -> None:
    pending = await add_merchant(orders.env.pool, orders.key[0], state="PENDING_REVIEW")
    before = await _counts(orders.env)
    cases = [
        (
            {**order_json("R-sum", [(orders.a, 6_000), (orders.b, 3_000)], 999), "amount": 10_000},
            400,
            "E031_SPLIT_MISMATCH",
        ),
        (
            order_json("R-inactive", [(orders.a, 1), (pending, 1)], 0),
            422,
            "E032_MERCHANT_NOT_ACTIVE",
        ),
        ({**order_json("R-field", [(orders.a, 1)], 0), "amount": "1"}, 400, "E001"),
    ]
    for body, status, code in cases:
        response = await orders.post("/v1/orders", body)
        assert response.status_code == status, response.text
        assert response.json()["errorCode"] == code and response.headers.get("X-Signature")
    inactive = await orders.post(
        "/v1/orders", order_json("R-inactive", [(orders.a, 1), (pending, 1)], 0)
    )
    assert inactive.json()["msg"].endswith("is PENDING_REVIEW, not ACTIVE")
    # Another tenant's merchant reads as unknown.
    foreign = await orders.post(
        "/v1/orders", order_json("R-foreign", [(orders.a, 1)], 0), key=orders.other
    )
    assert foreign.status_code == 422 and foreign.json()["msg"].endswith("unknown merchant")
    assert await _counts(orders.env) == before

    order_no = f"SO-{uuid.uuid4().hex[:10]}"
    body = order_json(order_no, [(orders.a, 700)], 300)
    created = await orders.post("/v1/orders", body)
    assert created.status_code == 200, created.text
    conflict = await orders.post("/v1/orders", {**body, "description": "another"})
    assert (
        conflict.status_code == 409 and conflict.json()["errorCode"] == "E010_IDEMPOTENCY_CONFLICT"
    )
    unpaid = await orders.post(f"/v1/orders/{order_no}/refunds", {"refundNo": "X", "amount": 1})
    assert unpaid.status_code == 409 and unpaid.json()["errorCode"] == "E034_ORDER_NOT_PAID"
    await orders.pay(created.json())

    async def is_paid() -> bool:
        return bool((await orders.order(order_no))["state"] == "PAID")

    await wait_until(is_paid)
    before = await _counts(orders.env)
    beyond = await orders.post(f"/v1/orders/{order_no}/refunds", {"refundNo": "X", "amount": 1_001})
    assert beyond.status_code == 422 and beyond.json()["errorCode"] == "E033_REFUND_EXCEEDS_PAID"
    # Another tenant's order answers as a missing one.
    for response in (
        await orders.get(f"/v1/orders/{order_no}", key=orders.other),
        await orders.post(
            f"/v1/orders/{order_no}/refunds", {"refundNo": "Y", "amount": 1}, key=orders.other
        ),
        await orders.get("/v1/orders/no-such-order"),
    ):
        assert response.status_code == 404 and response.json()["errorCode"] == "E009_NOT_FOUND"
    assert await _counts(orders.env) == before


async def test_a_depository_refusal_fails_the_order_for_good(orders: Orders) -> None:
    body = order_json(
        f"SO-{uuid.uuid4().hex[:10]}", [(orders.b, 1_000)], 0, description="REJECT it"
    )
    refused = await orders.post("/v1/orders", body)
    assert refused.status_code == 200, refused.text
    assert refused.json()["state"] == "FAILED"
    assert refused.json()["errorCode"] == "E036_DEPOSITORY_REFUSED"
    again = await orders.post("/v1/orders", body)
    assert again.json()["orderId"] == refused.json()["orderId"]
