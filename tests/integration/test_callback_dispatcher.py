"""The callback dispatcher as a real process: Kafka in, signed POSTs out, retries and replay."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer
from support.env import ModuleEnv, insert_callback_key
from support.processes import Service, callback_dispatcher, free_port, running
from support.receivers import ALLOW_LOCAL_RECEIVERS, serving

from fundhub.client import HEADER_SIGNATURE, HEADER_TIMESTAMP, verify_callback
from fundhub.common.envelope import Envelope, deterministic_id
from fundhub.common.kafka import KafkaPublisher, OutgoingMessage
from fundhub.common.topics import topics
from fundhub.payouts.wire import payout_body

KEY_ID = "ak_callbacks_test"
BASE_S = 0.5
TIMEOUT_S = 1.0


@dataclass
class Hit:
    at: float
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A client's callback endpoint whose behaviour per path is scripted by the test."""

    url: str = ""
    hits: dict[str, list[Hit]] = field(default_factory=dict)

    def on(self, path: str) -> list[Hit]:
        return self.hits.setdefault(path, [])


Script = Callable[[int], Awaitable[int]]


def scripted(receiver: Receiver, scripts: dict[str, Script]) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        hits = receiver.on(request.path)
        hits.append(Hit(time.monotonic(), dict(request.headers), await request.read()))
        status = await scripts[request.path](len(hits))
        return web.Response(status=status, text="ok" if status < 300 else "no")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    return app


async def flaky(n: int) -> int:
    return 500 if n <= 2 else 200


async def slow_once(n: int) -> int:
    if n == 1:
        await asyncio.sleep(TIMEOUT_S * 3)
    return 200


async def down(n: int) -> int:
    return 503


async def no_content(n: int) -> int:
    return 204


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = scripted(rec, {"/flaky": flaky, "/slow": slow_once, "/down": down, "/ok": no_content})
    async with serving(app, free_port()) as url:
        rec.url = url
        yield rec


@pytest.fixture(scope="module")
async def webhook_secret(env: ModuleEnv) -> str:
    secret = secrets.token_urlsafe(32)
    await insert_callback_key(env, KEY_ID, secret)
    return secret


@pytest.fixture(scope="module")
async def dispatcher(env: ModuleEnv, webhook_secret: str) -> AsyncIterator[Service]:
    service = callback_dispatcher(
        env, backoff_base_s=BASE_S, backoff_max_s=4, timeout_s=TIMEOUT_S, **ALLOW_LOCAL_RECEIVERS
    )
    async with running(service):
        yield service


async def final_payout(env: ModuleEnv, url: str, state: str = "SUCCESS") -> dict[str, Any]:
    pay_id = f"P{uuid.uuid4().hex[:20]}"
    row = await env.pool.fetchrow(
        "INSERT INTO payouts (pay_id, key_id, request_id, supplier_id, payer_account_id, amount, "
        "currency, payee, callback_url, state, bank_txn_id, finished_at) "
        "VALUES ($1, $2, $3, 'SUP-1', '6222020000000001', 1000, 'CNY', $4, $5, $6, 'BT-1', now()) "
        "RETURNING *",
        pay_id,
        KEY_ID,
        f"req-{pay_id}",
        {"accountName": "Supplier", "accountNo": "6217000000000001", "bankName": "Bank"},
        url,
        state,
    )
    assert row is not None
    return dict(row)


def callback_envelope(row: dict[str, Any], body: dict[str, Any] | None = None) -> Envelope:
    """The payout.callback event for ``row``; its body the payout's own unless given."""
    return Envelope(
        id=deterministic_id("callback", row["pay_id"], row["state"]),
        type="payout.callback",
        correlation_id=uuid.uuid4().hex,
        data={
            "payId": row["pay_id"],
            "state": row["state"],
            "url": row["callback_url"],
            "keyId": row["key_id"],
            "body": payout_body(row) if body is None else body,
        },
    )


async def publish(env: ModuleEnv, messages: list[OutgoingMessage]) -> None:
    publisher = KafkaPublisher(env.settings)
    await publisher.start()
    try:
        await publisher.send_many(messages)
    finally:
        await publisher.stop()


def of(env: ModuleEnv, envelope: Envelope, pay_id: str) -> OutgoingMessage:
    return OutgoingMessage.of(topics(env.settings).client_callbacks, envelope, pay_id)


async def wait_for_status(
    env: ModuleEnv, pay_id: str, status: str, timeout_s: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = await env.pool.fetchrow("SELECT * FROM callback_deliveries WHERE pay_id = $1", pay_id)
        if row is not None and row["status"] == status:
            return dict(row)
        await asyncio.sleep(0.1)
    raise AssertionError(f"{pay_id} never reached {status}: {row and dict(row)}")


async def attempts_of(env: ModuleEnv, delivery_id: int) -> list[dict[str, Any]]:
    rows = await env.pool.fetch(
        "SELECT * FROM callback_attempts WHERE delivery_id = $1 ORDER BY attempt_id", delivery_id
    )
    return [dict(r) for r in rows]


async def raw_messages(env: ModuleEnv, topic: str, expected: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=env.settings.kafka_bootstrap, auto_offset_reset="earliest"
    )
    await consumer.start()
    out: list[bytes] = []
    try:
        deadline = time.monotonic() + 30
        while len(out) < expected and time.monotonic() < deadline:
            polled = await consumer.getmany(timeout_ms=200)
            out.extend(r.value for records in polled.values() for r in records if r.value)
    finally:
        await consumer.stop()
    return out


async def metric(service: Service, name: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"{service.url}/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no metric {name}")


async def test_retries_with_backoff_until_delivered_signed(
    env: ModuleEnv, receiver: Receiver, webhook_secret: str, dispatcher: Service
) -> None:
    flaky_row = await final_payout(env, f"{receiver.url}/flaky")
    slow_row = await final_payout(env, f"{receiver.url}/slow", state="FAILED")
    flaky_env = callback_envelope(flaky_row)
    # The same fact twice (an outbox re-send) is one delivery.
    await publish(
        env,
        [
            of(env, flaky_env, flaky_row["pay_id"]),
            of(env, callback_envelope(slow_row), slow_row["pay_id"]),
            of(env, flaky_env, flaky_row["pay_id"]),
        ],
    )

    flaky_delivery = await wait_for_status(env, flaky_row["pay_id"], "DELIVERED")
    slow_delivery = await wait_for_status(env, slow_row["pay_id"], "DELIVERED")

    hits = receiver.on("/flaky")
    assert len(hits) == 3
    # Backoff: base * 2^n, never below the jitter floor (0.75).
    assert hits[1].at - hits[0].at >= 0.75 * BASE_S
    assert hits[2].at - hits[1].at >= 0.75 * BASE_S * 2
    for hit in hits:
        assert hit.headers["Content-Type"] == "application/json"
        body = verify_callback(
            webhook_secret, hit.headers[HEADER_TIMESTAMP], hit.headers[HEADER_SIGNATURE], hit.body
        )
        assert body == orjson.loads(orjson.dumps(payout_body(flaky_row)))
    assert body["state"] == "SUCCESS"
    assert flaky_delivery["attempts"] == 3
    assert flaky_delivery["delivered_at"] is not None
    assert [a["status_code"] for a in await attempts_of(env, flaky_delivery["delivery_id"])] == [
        500,
        500,
        200,
    ]
    deliveries = await env.pool.fetchval(
        "SELECT count(*) FROM callback_deliveries WHERE pay_id = $1", flaky_row["pay_id"]
    )
    assert deliveries == 1

    slow_attempts = await attempts_of(env, slow_delivery["delivery_id"])
    assert [a["status_code"] for a in slow_attempts] == [None, 200]
    assert "timed out" in slow_attempts[0]["error"]
    assert slow_attempts[0]["duration_ms"] >= TIMEOUT_S * 1000 * 0.9
    slow_body = verify_callback(
        webhook_secret,
        receiver.on("/slow")[-1].headers[HEADER_TIMESTAMP],
        receiver.on("/slow")[-1].headers[HEADER_SIGNATURE],
        receiver.on("/slow")[-1].body,
    )
    assert (slow_body["state"], slow_body["bizCode"]) == ("FAILED", "FAILED")

    # Replay: an operator sets the delivery back to PENDING; it is sent again.
    await env.pool.execute(
        "UPDATE callback_deliveries SET status = 'PENDING', next_attempt_at = now() "
        "WHERE delivery_id = $1",
        flaky_delivery["delivery_id"],
    )
    replayed = await wait_for_status(env, flaky_row["pay_id"], "DELIVERED")
    assert len(receiver.on("/flaky")) == 4
    assert replayed["attempts"] == 4
    assert await metric(dispatcher, "fundhub_callbacks_delivered_total") >= 3
    assert await metric(dispatcher, "fundhub_callbacks_failed_attempts_total") >= 3


async def test_gives_up_past_the_age_limit(
    env: ModuleEnv, receiver: Receiver, dispatcher: Service
) -> None:
    row = await final_payout(env, f"{receiver.url}/down", state="RETURNED")
    await publish(env, [of(env, callback_envelope(row), row["pay_id"])])
    pending = await wait_for_status(env, row["pay_id"], "PENDING")
    deadline = time.monotonic() + 20
    while not await attempts_of(env, pending["delivery_id"]):
        assert time.monotonic() < deadline, "no first attempt"
        await asyncio.sleep(0.1)
    # Make it older than callback_max_age_s: the next failure gives up.
    await env.pool.execute(
        "UPDATE callback_deliveries SET created_at = now() - interval '3 days' "
        "WHERE delivery_id = $1",
        pending["delivery_id"],
    )
    gave_up = await wait_for_status(env, row["pay_id"], "GAVE_UP")
    assert gave_up["delivered_at"] is None
    attempts = await attempts_of(env, gave_up["delivery_id"])
    assert len(attempts) == gave_up["attempts"] >= 2
    assert {a["status_code"] for a in attempts} == {503}
    assert await metric(dispatcher, "fundhub_callbacks_gave_up_total") == 1
    await asyncio.sleep(BASE_S * 4)
    assert len(receiver.on("/down")) == len(attempts)  # nothing after giving up


async def test_poison_and_unknown_types_are_dead_lettered(
    env: ModuleEnv, receiver: Receiver, dispatcher: Service
) -> None:
    # A delivery's subject is any id now (payouts, orders, settlements): what can never become
    # a delivery is a message of a type the dispatcher does not know, or no envelope at all.
    missing = {
        "pay_id": "P-does-not-exist",
        "key_id": KEY_ID,
        "state": "SUCCESS",
        "callback_url": f"{receiver.url}/ok",
    }
    known = callback_envelope(missing, body={"payId": missing["pay_id"]})
    envelope = known.model_copy(update={"type": "nonsense.callback"})
    name = topics(env.settings).client_callbacks
    await publish(
        env,
        [
            OutgoingMessage(name, b"not json", b"x"),
            of(env, envelope, "P-does-not-exist"),
        ],
    )
    parked = await raw_messages(env, topics(env.settings).dead_letter, 2)
    assert sorted(parked) == sorted([b"not json", envelope.to_bytes()])
    # Later messages still flow: the partition is not stuck.
    row = await final_payout(env, f"{receiver.url}/ok")
    await publish(env, [of(env, callback_envelope(row), row["pay_id"])])
    await wait_for_status(env, row["pay_id"], "DELIVERED")


async def test_sigterm_stops_cleanly(dispatcher: Service) -> None:
    dispatcher.stop()
    assert dispatcher.proc is not None
    assert dispatcher.proc.returncode == 0, dispatcher.tail()
