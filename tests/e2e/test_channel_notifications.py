"""The channels end to end, through the running gateway and the channel simulator (both real
processes): a payment created through the adapter, paid at the simulator, notified signed (and,
for WeChat Pay, encrypted) to ``/callbacks/wechatpay`` or ``/callbacks/alipay``, lands on
``channels.notify.v1`` as exactly the expected ``ChannelEvent``, keyed by ``out_trade_no``,
under its ``message_id()``; refunds too. Every refusal of the issue's acceptance answers the
channel's refusal and publishes nothing. Keys are TEST keys made per run."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from support.channels import MerchantKeys, cli_add_args, serve_on_simulator
from support.env import ModuleEnv
from support.kafka import message_count, read_keyed
from support.processes import Service, channel_simulator, gateway

from e2e.conftest import wait_until
from fundhub.channel_simulator import notices
from fundhub.channel_simulator.keys import ALIPAY_KEY_FILE, PLATFORM_KEY_FILE, PLATFORM_SERIAL_FILE
from fundhub.channel_simulator.main import write_keys
from fundhub.channels.events import EVENT_TYPE, Channel, ChannelEvent, EventKind, RefundStatus
from fundhub.channels.payments import HttpChannelPayments, open_channel_payments
from fundhub.channels.ports import PaymentOrder, RefundOrder
from fundhub.common.clock import BANK_TZ, utcnow
from fundhub.common.envelope import Envelope
from fundhub.common.signing import generate_rsa_keypair, load_private_key
from fundhub.common.topics import topics

UNVERIFIED = {"code": "FAIL", "message": "signature verification failed"}
MALFORMED = {"code": "FAIL", "message": "invalid notification"}


@dataclass
class Channels:
    env: ModuleEnv
    gateway: Service
    simulator: Service
    http: httpx.AsyncClient
    payments: HttpChannelPayments
    merchant: MerchantKeys
    platform_key: RSAPrivateKey
    platform_serial: str
    alipay_key: RSAPrivateKey

    @property
    def topic(self) -> str:
        return topics(self.env.settings).channel_notifications

    def notify_url(self, channel: Channel) -> str:
        return f"{self.gateway.url}/callbacks/{channel.value.lower()}"

    async def sim(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = await self.http.request(method, f"{self.simulator.url}{path}", **kwargs)
        assert answer.status_code == 200, answer.text
        return answer.json()

    async def published(self) -> int:
        return await message_count(self.env.settings, self.topic)


@pytest.fixture(scope="module")
async def channels(env: ModuleEnv) -> AsyncIterator[Channels]:
    keys_dir: Path = env.tmp / "channel-sim"
    write_keys(keys_dir)  # the simulator's own keys, held by the test too (to forge with)
    gw = gateway(env)
    sim = channel_simulator(
        env, "--keys-dir", str(keys_dir), "--time-factor", "0.001", "--refund-delay", "5,20"
    )
    gw.start()
    sim.start()
    merchant = MerchantKeys()
    try:
        await gw.wait_ready()
        await sim.wait_ready()
        async with httpx.AsyncClient(timeout=30) as http:
            sim_keys = await serve_on_simulator(http, sim.url, merchant)
            wechatpay, alipay = cli_add_args(env.tmp, merchant, sim_keys)
            env.cli(*wechatpay)
            env.cli(*alipay)
            settings = env.settings.model_copy(
                update={
                    "wechatpay_base_url": sim.url,
                    "alipay_gateway_url": f"{sim.url}/gateway.do",
                }
            )
            async with open_channel_payments(settings, env.pool) as payments:
                yield Channels(
                    env=env,
                    gateway=gw,
                    simulator=sim,
                    http=http,
                    payments=payments,
                    merchant=merchant,
                    platform_key=load_private_key((keys_dir / PLATFORM_KEY_FILE).read_text()),
                    platform_serial=(keys_dir / PLATFORM_SERIAL_FILE).read_text().strip(),
                    alipay_key=load_private_key((keys_dir / ALIPAY_KEY_FILE).read_text()),
                )
    finally:
        sim.stop()
        gw.stop()


async def event_of(
    channels: Channels, out_trade_no: str, kind: EventKind, count: int = 1
) -> list[tuple[str | None, Envelope]]:
    """The messages about ``out_trade_no`` of that kind, once ``count`` of them are there."""
    found: list[tuple[str | None, Envelope]] = []

    async def arrived() -> bool:
        nonlocal found
        records = await read_keyed(channels.env.settings, channels.topic, 10**6, timeout_s=0.5)
        found = [
            (key, e)
            for key, e in records
            if e.data["outTradeNo"] == out_trade_no and e.data["kind"] == kind.value
        ]
        return len(found) >= count

    await wait_until(arrived, timeout_s=30, interval_s=0.2)
    return found


async def deliveries(channels: Channels, out_trade_no: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = await channels.sim(
        "GET", "/sim/deliveries", params={"limit": 10_000}
    )
    return [d for d in listed if d["outTradeNo"] == out_trade_no]


def payment(channels: Channels, channel: Channel, amount: int = 8_800) -> PaymentOrder:
    app_id = (
        channels.merchant.appid if channel is Channel.WECHATPAY else channels.merchant.alipay_app_id
    )
    number = f"E2E-{channel.value[:2]}-{uuid.uuid4().hex[:16]}"
    return PaymentOrder(
        channel, app_id, number, amount, "CNY", "端到端测试", channels.notify_url(channel)
    )


def at_second(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(BANK_TZ)


async def test_the_simulator_publishes_the_keys_it_signs_with(channels: Channels) -> None:
    published = await channels.sim("GET", "/sim/keys")
    assert published["wechatpay"]["platformSerial"] == channels.platform_serial
    listed = channels.env.cli("channel", "list", "--json")
    assert channels.platform_serial in listed and channels.merchant.alipay_app_id in listed


async def test_wechatpay_payment_and_refund_reach_the_topic_exactly(channels: Channels) -> None:
    order = payment(channels, Channel.WECHATPAY)
    params = await channels.payments.create_payment(order)
    assert params.params["code_url"].startswith("weixin://")
    trade = await channels.sim("POST", f"/sim/wechatpay/pay/{order.out_trade_no}")

    [(key, envelope)] = await event_of(channels, order.out_trade_no, EventKind.PAYMENT)
    [delivery] = await deliveries(channels, order.out_trade_no)
    assert delivery["outcome"] == "delivered" and delivery["attempts"] == 1
    expected = ChannelEvent(
        channel=Channel.WECHATPAY,
        kind=EventKind.PAYMENT,
        app_id=channels.merchant.appid,
        merchant_ref=channels.merchant.mchid,
        notification_id=delivery["notificationId"],
        out_trade_no=order.out_trade_no,
        transaction_id=trade["transactionId"],
        total_fen=8_800,
        occurred_at=at_second(trade["paidAt"]),
    )
    assert ChannelEvent.from_envelope(envelope) == expected
    assert (key, envelope.id, envelope.type) == (
        order.out_trade_no,
        expected.message_id(),
        EVENT_TYPE,
    )

    refund = RefundOrder(
        Channel.WECHATPAY, order.app_id, order.out_trade_no, "RF-" + order.out_trade_no, 800, 8_800,
        "退货", channels.notify_url(Channel.WECHATPAY),
    )  # fmt: skip
    answer = await channels.payments.refund(refund)
    [(_, refunded)] = await event_of(channels, order.out_trade_no, EventKind.REFUND)
    event = ChannelEvent.from_envelope(refunded)
    assert (event.out_refund_no, event.refund_id, event.refund_fen, event.refund_status) == (
        refund.out_refund_no,
        answer.refund_id,
        800,
        RefundStatus.SUCCESS,
    )
    assert (event.app_id, event.total_fen, event.transaction_id) == (
        order.app_id,
        8_800,
        trade["transactionId"],
    )


async def test_alipay_payment_and_partial_refund_reach_the_topic_exactly(
    channels: Channels,
) -> None:
    order = payment(channels, Channel.ALIPAY, amount=10_001)
    assert (await channels.payments.create_payment(order)).params["qr_code"]
    trade = await channels.sim("POST", f"/sim/alipay/pay/{order.out_trade_no}")
    [(key, envelope)] = await event_of(channels, order.out_trade_no, EventKind.PAYMENT)
    [delivery] = await deliveries(channels, order.out_trade_no)
    expected = ChannelEvent(
        channel=Channel.ALIPAY,
        kind=EventKind.PAYMENT,
        app_id=channels.merchant.alipay_app_id,
        merchant_ref=channels.merchant.seller_id,
        notification_id=delivery["notificationId"],
        out_trade_no=order.out_trade_no,
        transaction_id=trade["transactionId"],
        total_fen=10_001,
        occurred_at=at_second(trade["paidAt"]),
    )
    assert ChannelEvent.from_envelope(envelope) == expected
    assert (key, envelope.id) == (order.out_trade_no, f"ALIPAY:{delivery['notificationId']}")

    refund = RefundOrder(
        Channel.ALIPAY, order.app_id, order.out_trade_no, "ARF-" + order.out_trade_no, 2_001, 10_001,
        "退货", channels.notify_url(Channel.ALIPAY),
    )  # fmt: skip
    await channels.payments.refund(refund)
    [(_, refunded)] = await event_of(channels, order.out_trade_no, EventKind.REFUND)
    event = ChannelEvent.from_envelope(refunded)
    assert (event.out_refund_no, event.refunded_total_fen, event.refund_fen) == (
        refund.out_refund_no,
        2_001,
        None,
    )


async def test_duplicates_and_retries_share_one_message_id(channels: Channels) -> None:
    await channels.sim("POST", "/sim/behaviour", json={"duplicateRate": 1.0, "delayMs": [0, 30]})
    try:
        order = payment(channels, Channel.WECHATPAY, amount=1)
        await channels.payments.create_payment(order)
        await channels.sim("POST", f"/sim/wechatpay/pay/{order.out_trade_no}")
        messages = await event_of(channels, order.out_trade_no, EventKind.PAYMENT, count=2)
    finally:
        await channels.sim("POST", "/sim/behaviour", json={"duplicateRate": 0.0, "delayMs": [0, 0]})
    assert len({envelope.id for _, envelope in messages}) == 1
    assert len({d["notificationId"] for d in await deliveries(channels, order.out_trade_no)}) == 1


async def test_an_unpaid_alipay_trade_that_closes_is_told(channels: Channels) -> None:
    order = payment(channels, Channel.ALIPAY)
    await channels.payments.create_payment(order)
    await channels.sim("POST", f"/sim/alipay/close/{order.out_trade_no}")
    [(_, envelope)] = await event_of(channels, order.out_trade_no, EventKind.CLOSED)
    assert envelope.data["totalFen"] == 8_800


# --- refusals: the channel's refusal, nothing published ---------------------------------------------


def _wechatpay_notice(channels: Channels, **change: Any) -> tuple[dict[str, str], bytes]:
    """A genuine TRANSACTION.SUCCESS for the registered app, as the simulator would send it,
    with ``change`` applied (resource fields, ``apiv3_key``, ``at``, ``key``, ``serial``)."""
    m = channels.merchant
    resource = notices.transaction_resource(
        appid=change.pop("appid", m.appid),
        mchid=change.pop("mchid", m.mchid),
        out_trade_no=f"FORGED-{uuid.uuid4().hex[:12]}",
        transaction_id="4200000000000000000000009999",
        total_fen=100,
        success_time=utcnow(),
    )
    apiv3_key = change.pop("apiv3_key", m.apiv3_key.encode())
    body = notices.wechatpay_body(
        notices.notification_id(), "TRANSACTION.SUCCESS", resource, apiv3_key, utcnow()
    )
    notice = notices.sign_wechatpay(
        body,
        change.pop("key", channels.platform_key),
        change.pop("serial", channels.platform_serial),
        change.pop("at", utcnow()),
    )
    assert not change
    return notice.headers, notice.body


def _tampered(channels: Channels) -> tuple[dict[str, str], bytes]:
    headers, body = _wechatpay_notice(channels)
    document = orjson.loads(body)
    document["id"] = "EV-TAMPERED"
    return headers, orjson.dumps(document)


def _bad_signature(channels: Channels) -> tuple[dict[str, str], bytes]:
    headers, body = _wechatpay_notice(channels)
    raw = bytearray(base64.b64decode(headers["Wechatpay-Signature"]))
    raw[0] ^= 0xFF
    return {**headers, "Wechatpay-Signature": base64.b64encode(raw).decode()}, body


WECHATPAY_REFUSALS: dict[
    str, tuple[Callable[[Channels], tuple[dict[str, str], bytes]], int, dict[str, str]]
] = {
    "tampered body": (_tampered, 401, UNVERIFIED),
    "tampered signature": (_bad_signature, 401, UNVERIFIED),
    "unknown serial": (lambda c: _wechatpay_notice(c, serial="UNKNOWN0SERIAL"), 401, UNVERIFIED),
    "signed by another key": (
        lambda c: _wechatpay_notice(c, key=load_private_key(generate_rsa_keypair()[0])),
        401,
        UNVERIFIED,
    ),
    "wrong APIv3 key": (lambda c: _wechatpay_notice(c, apiv3_key=b"W" * 32), 401, UNVERIFIED),
    "timestamp 6 minutes old": (
        lambda c: _wechatpay_notice(c, at=utcnow() - timedelta(minutes=6)),
        401,
        UNVERIFIED,
    ),
    "another app's notification": (
        lambda c: _wechatpay_notice(c, mchid="1999999999"),
        401,
        UNVERIFIED,
    ),
    "not JSON": (lambda c: ({**_wechatpay_notice(c)[0]}, b"{not json"), 400, MALFORMED),
    "a key twice": (
        lambda c: (lambda h, b: (h, b.replace(b'{"id":', b'{"id":"x","id":', 1)))(
            *_wechatpay_notice(c)
        ),
        400,
        MALFORMED,
    ),
    "no signature headers": (
        lambda c: ({"Content-Type": "application/json"}, _wechatpay_notice(c)[1]),
        401,
        UNVERIFIED,
    ),
}


@pytest.mark.parametrize("case", list(WECHATPAY_REFUSALS))
async def test_wechatpay_refusals_publish_nothing(channels: Channels, case: str) -> None:
    make, status, body = WECHATPAY_REFUSALS[case]
    headers, payload = make(channels)
    before = await channels.published()
    answer = await channels.http.post(
        channels.notify_url(Channel.WECHATPAY), content=payload, headers=headers
    )
    assert (answer.status_code, answer.json()) == (status, body)
    assert await channels.published() == before


async def test_wechatpay_oversize_body_is_refused_in_its_terms(channels: Channels) -> None:
    answer = await channels.http.post(
        channels.notify_url(Channel.WECHATPAY),
        content=b"{" + b" " * 20_000 + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 413 and answer.json()["code"] == "FAIL"


def _alipay_form(channels: Channels, key: RSAPrivateKey | None = None, **change: str) -> bytes:
    m = channels.merchant
    fields = notices.alipay_fields(
        app_id=m.alipay_app_id,
        seller_id=m.seller_id,
        out_trade_no=f"FORGED-{uuid.uuid4().hex[:12]}",
        trade_no="2026000000000000000000009999",
        trade_status="TRADE_SUCCESS",
        total_fen=100,
        subject="x",
        gmt_create=utcnow(),
        gmt_payment=utcnow(),
    )
    fields.update(change)
    return notices.sign_alipay(fields, key or channels.alipay_key, utcnow())


def _alipay_tampered(channels: Channels) -> bytes:
    params = dict(parse_qsl(_alipay_form(channels).decode()))
    params["total_amount"] = "99999.00"
    return urlencode(params).encode()


ALIPAY_REFUSALS: dict[str, tuple[Callable[[Channels], bytes], int]] = {
    "tampered parameter": (_alipay_tampered, 401),
    "another app's notification": (lambda c: _alipay_form(c, seller_id="2088999999999999"), 401),
    "unknown app_id": (lambda c: _alipay_form(c, app_id="2021999999999999"), 401),
    "signed by another key": (
        lambda c: _alipay_form(c, key=load_private_key(generate_rsa_keypair()[0])),
        401,
    ),
    "a parameter twice": (lambda c: _alipay_form(c) + b"&total_amount=0.01", 400),
    "yuan as 1e3": (lambda c: _alipay_form(c, total_amount="1e3"), 400),
    "yuan with three decimals": (lambda c: _alipay_form(c, total_amount="1.001"), 400),
    "not a form": (lambda c: b"\xff\xfe", 400),
}


@pytest.mark.parametrize("case", list(ALIPAY_REFUSALS))
async def test_alipay_refusals_answer_fail_and_publish_nothing(
    channels: Channels, case: str
) -> None:
    make, status = ALIPAY_REFUSALS[case]
    before = await channels.published()
    answer = await channels.http.post(
        channels.notify_url(Channel.ALIPAY),
        content=make(channels),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (answer.status_code, answer.text) == (status, "fail")
    assert await channels.published() == before


async def test_a_genuine_forged_looking_notice_is_accepted_for_contrast(channels: Channels) -> None:
    """The same builders, unchanged, are accepted: the refusals above are for their change."""
    before = await channels.published()
    headers, body = _wechatpay_notice(channels)
    answer = await channels.http.post(
        channels.notify_url(Channel.WECHATPAY), content=body, headers=headers
    )
    assert (answer.status_code, answer.content) == (204, b"")
    answer = await channels.http.post(
        channels.notify_url(Channel.ALIPAY),
        content=_alipay_form(channels),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (answer.status_code, answer.text) == (200, "success")
    deadline = time.monotonic() + 10
    while await channels.published() < before + 2:
        assert time.monotonic() < deadline
