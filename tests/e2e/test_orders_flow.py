"""Orders end to end through the gateway's signed API: an order created with its payment's
parameters, paid by the channel's notification (consumed by a real notify-ingest) into the
receivers' pending, refunded before settlement, each final state delivered signed to notifyUrl
by a real callback dispatcher; and the refusals, each with its code and nothing written.

The gateway runs on a thread of this process (its whole pipeline): the channels' adapters are
the channels context's to write, so it is handed a test channel over HTTP. The bank simulator's
depository, notify-ingest and the callback dispatcher are real processes; payment-worker's
refund handling runs in this process for the same reason as the gateway.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from ipaddress import IPv4Network
from typing import Any

import httpx
import pytest
from aiohttp import web
from support.api import signed_get, signed_headers
from support.channel_events import paid, publish, refunded
from support.channel_server import DOWN, UP, ChannelServer, HttpChannel, channel_serving
from support.env import ModuleEnv
from support.inprocess_gateway import gateway_serving
from support.ledger import assert_ledger_invariants
from support.merchants import Merchant, add_merchant
from support.order_workers import order_workers
from support.order_world import order_json, order_settings
from support.processes import Service, free_port, notify_ingest
from support.receivers import ALLOW_LOCAL_RECEIVERS, serving

from e2e.conftest import wait_until
from fundhub.channels.events import Channel
from fundhub.common.kafka import KafkaPublisher
from fundhub.common.signing import webhook_signature
from fundhub.common.topics import Topics, topics
from fundhub.orders.channel_choice import configured

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
    names: Topics
    publisher: KafkaPublisher
    channel: ChannelServer
    receiver: Receiver
    notify_url: str
    key: tuple[str, str]
    other: tuple[str, str]
    a: Merchant
    b: Merchant

    async def post(
        self, path: str, body: Any, key: tuple[str, str] | None = None
    ) -> httpx.Response:
        raw = json.dumps(body).encode()
        headers = signed_headers(*(key or self.key), "POST", path, None, raw)
        headers["Content-Type"] = "application/json"
        return await self.http.post(path, content=raw, headers=headers)

    async def get(self, path: str, key: tuple[str, str] | None = None) -> httpx.Response:
        return await signed_get(self.http, *(key or self.key), path)

    async def pending(self, account_id: str) -> int:
        response = await self.get(f"/v1/accounts/{account_id}/balance")
        assert response.status_code == 200, response.text
        return int(response.json()["pending"])


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
    arguments = ["--port", str(port), "--gateway-url", "http://127.0.0.1:9", "--app-id",
                 env.app_id, "--private-key-file", str(key_file)]  # fmt: skip
    return Service(env, "bank-simulator", "fundhub-bank-simulator", port, args=arguments)


@pytest.fixture(scope="module")
async def orders(env: ModuleEnv) -> AsyncIterator[Orders]:
    env.register_bank_app()
    key_id, secret, webhook_secret = _key(env, "platform")
    other_id, other_secret, _ = _key(env, "another platform")
    simulator, ingest = _bank_simulator(env), notify_ingest(env)
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
    services = [simulator, ingest, dispatcher]
    receiver = Receiver(secret=webhook_secret)
    app = web.Application()
    app.router.add_post("/order-callbacks", receiver.handle)
    for service in services:
        service.start()
    try:
        await asyncio.gather(*(s.wait_ready() for s in services))
        settings = order_settings(
            env,
            bank_base_url=simulator.url,
            callback_allow_cidrs=(IPv4Network("127.0.0.1/32"),),
            refund_poll_base_s=0.5,
        )
        a = await add_merchant(env.pool, key_id)
        b = await add_merchant(env.pool, key_id)
        async with (
            serving(app) as receiver_url,
            channel_serving() as served,
            order_workers(
                settings, env.pool, configured(settings, served.adapters), with_events=False
            ) as publisher,
        ):
            with gateway_serving(settings, {c: HttpChannel(served.url, c) for c in Channel}) as url:
                async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                    yield Orders(
                        env,
                        http,
                        topics(settings),
                        publisher,
                        served.server,
                        receiver,
                        f"{receiver_url}/order-callbacks",
                        (key_id, secret),
                        (other_id, other_secret),
                        a,
                        b,
                    )
    finally:
        for service in reversed(services):
            service.stop()


async def _counts(env: ModuleEnv) -> tuple[int, int, int]:
    row = await env.pool.fetchrow(
        "SELECT (SELECT count(*) FROM orders) AS o, (SELECT count(*) FROM order_refunds) AS r,"
        " (SELECT count(*) FROM journal_entries) AS j"
    )
    assert row is not None
    return row["o"], row["r"], row["j"]


async def test_an_order_is_created_paid_refunded_and_every_final_state_called_back(
    orders: Orders,
) -> None:
    order_no = f"SO-{uuid.uuid4().hex[:10]}"
    body = order_json(
        order_no, [(orders.a, 6_000), (orders.b, 3_000)], 1_000, notifyUrl=orders.notify_url
    )
    created = await orders.post("/v1/orders", body)
    assert created.status_code == 200, created.text
    assert created.headers.get("X-Signature") and created.headers["Cache-Control"] == "no-store"
    order = created.json()
    assert order["state"] == "AWAITING_PAYMENT" and order["bizCode"] == "PROCESSING"
    assert order["payment"]["params"]["code_url"].endswith(order["orderId"])
    assert order["settlement"] == {"state": "UNSETTLED", "settledAt": None}
    # The same request again (an answer that never arrived): the same order.
    again = await orders.post("/v1/orders", body)
    assert again.status_code == 200 and again.json()["orderId"] == order["orderId"]

    pending_a = await orders.pending(orders.a.account_id)
    # The channel's notification, verified by the gateway's channel route, on the topic; twice.
    notice = paid(order)
    await publish(orders.publisher, orders.names, [notice, notice])

    async def is_paid() -> bool:
        return bool((await orders.get(f"/v1/orders/{order_no}")).json()["state"] == "PAID")

    await wait_until(is_paid)
    assert await orders.pending(orders.a.account_id) == pending_a + 6_000
    read = (await orders.get(f"/v1/orders/{order_no}")).json()
    assert (
        read["bizCode"] == "SUCCESS" and read["payment"]["transactionId"] == notice.transaction_id
    )

    refund = await orders.post(
        f"/v1/orders/{order_no}/refunds", {"refundNo": "RF-1", "amount": 5_000}
    )
    assert refund.status_code == 202, refund.text
    answer = refund.json()
    assert answer["state"] == "PROCESSING" and answer["bizCode"] == "PROCESSING"
    assert [s["amount"] for s in answer["splits"]] == [3_000, 1_500]
    assert answer["platformFee"] == 500

    async def sent() -> bool:
        item = (await orders.get(f"/v1/orders/{order_no}")).json()["refunds"][0]
        return bool(item["channelRefundId"])

    await wait_until(sent)
    item = (await orders.get(f"/v1/orders/{order_no}")).json()["refunds"][0]
    assert item["takenFrom"] == "pending"
    assert await orders.pending(orders.a.account_id) == pending_a + 3_000
    await publish(
        orders.publisher,
        orders.names,
        [refunded(order, {**answer, "channelRefundId": item["channelRefundId"]})],
    )

    async def refunded_done() -> bool:
        read = (await orders.get(f"/v1/orders/{order_no}")).json()
        return bool(read["refunds"][0]["state"] == "SUCCESS")

    await wait_until(refunded_done)
    read = (await orders.get(f"/v1/orders/{order_no}")).json()
    assert read["refundedAmount"] == 5_000
    replay = await orders.post(
        f"/v1/orders/{order_no}/refunds", {"refundNo": "RF-1", "amount": 5_000}
    )
    assert replay.status_code == 200 and replay.json()["state"] == "SUCCESS"

    async def called_back() -> bool:
        return len(orders.receiver.received) >= 2

    await wait_until(called_back)
    seen = {(c.get("refundId") or c["orderId"], c["state"]) for c in orders.receiver.received}
    assert (order["orderId"], "PAID") in seen and (answer["refundId"], "SUCCESS") in seen
    assert orders.receiver.bad == 0
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
    assert (await orders.post("/v1/orders", body)).status_code == 200
    conflict = await orders.post("/v1/orders", {**body, "description": "another"})
    assert (
        conflict.status_code == 409 and conflict.json()["errorCode"] == "E010_IDEMPOTENCY_CONFLICT"
    )
    unpaid = await orders.post(f"/v1/orders/{order_no}/refunds", {"refundNo": "X", "amount": 1})
    assert unpaid.status_code == 409 and unpaid.json()["errorCode"] == "E034_ORDER_NOT_PAID"
    order = (await orders.get(f"/v1/orders/{order_no}")).json()
    await publish(orders.publisher, orders.names, [paid(order)])

    async def is_paid() -> bool:
        return bool((await orders.get(f"/v1/orders/{order_no}")).json()["state"] == "PAID")

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


async def test_a_channel_outage_answers_503_and_the_same_request_then_succeeds(
    orders: Orders,
) -> None:
    body = order_json(f"SO-{uuid.uuid4().hex[:10]}", [(orders.b, 1_000)], 0, channel="ALIPAY")
    orders.channel.mode = DOWN
    try:
        down = await orders.post("/v1/orders", body)
    finally:
        orders.channel.mode = UP
    assert down.status_code == 503 and down.json()["errorCode"] == "E013_UNAVAILABLE"
    assert "send the same order again" in down.json()["msg"]
    up = await orders.post("/v1/orders", body)
    assert up.status_code == 200 and up.json()["state"] == "AWAITING_PAYMENT"
    assert up.json()["payment"]["appId"]
