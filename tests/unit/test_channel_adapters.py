"""The HTTP adapters against the channels themselves: the channel simulator served by uvicorn on
a free port. Requests are signed as the real APIs want, answers verified; payments and refunds
are idempotent by their numbers; a refund never exceeds what was paid; the simulator's notices
verify and decrypt with our protocol modules and follow the channels' retry schedules."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import Any

import aiohttp
import httpx
import pytest
from aiohttp import web
from support.channels import MerchantKeys, StaticKeys, serve_on_simulator
from support.receivers import posts_to, serving
from support.uvicorn_thread import ThreadedServer

from fundhub.channel_simulator.app import create_app
from fundhub.channel_simulator.notifier import ALIPAY_RETRIES_S, WECHATPAY_RETRIES_S, Behaviour
from fundhub.channels import alipay, wechatpay
from fundhub.channels.alipay_http import AlipayHttp
from fundhub.channels.events import Channel, EventKind, RefundStatus
from fundhub.channels.ports import (
    REFUND_NOT_FOUND,
    ChannelRefused,
    ChannelUnavailable,
    PaymentOrder,
    RefundOrder,
    RefundState,
)
from fundhub.channels.wechatpay_http import WechatPayHttp
from fundhub.common.clock import utcnow
from fundhub.common.signing import generate_rsa_keypair, load_public_key, rsa_sha256_verify

FACTOR = 0.0005  # WeChat Pay's 15 s become 7.5 ms


@pytest.fixture(scope="module")
def simulator() -> Iterator[ThreadedServer]:
    server = ThreadedServer(
        create_app(Behaviour(time_factor=FACTOR, refund_delay_ms=(5, 10), seed=7))
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def merchant() -> MerchantKeys:
    return MerchantKeys()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture
async def keys(
    http: httpx.AsyncClient, simulator: ThreadedServer, merchant: MerchantKeys
) -> StaticKeys:
    return StaticKeys(merchant, await serve_on_simulator(http, simulator.url, merchant))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def order(
    channel: Channel, app_id: str, url: str = "http://127.0.0.1:9/cb", **change: Any
) -> PaymentOrder:
    base = PaymentOrder(
        channel, app_id, f"ORD-{uuid.uuid4().hex[:20]}", 12_345, "CNY", "测试订单", url
    )
    return replace(base, **change)


def refund_of(
    payment: PaymentOrder, number: str, fen: int, url: str = "http://127.0.0.1:9/cb"
) -> RefundOrder:
    return RefundOrder(
        payment.channel,
        payment.app_id,
        payment.out_trade_no,
        number,
        fen,
        payment.amount_fen,
        "退货",
        url,
    )


async def pay(
    http: httpx.AsyncClient, simulator: ThreadedServer, channel: str, out_trade_no: str
) -> None:
    answer = await http.post(f"{simulator.url}/sim/{channel}/pay/{out_trade_no}")
    assert answer.status_code == 200, answer.text


# --- WeChat Pay ----------------------------------------------------------------------------------


async def test_wechatpay_native_prepay_refund_and_query(
    session: aiohttp.ClientSession,
    keys: StaticKeys,
    http: httpx.AsyncClient,
    simulator: ThreadedServer,
) -> None:
    adapter = WechatPayHttp(session, simulator.url, keys, retries=0)
    payment = order(Channel.WECHATPAY, keys.wechatpay_keys.app.app_id)
    params = await adapter.create_payment(payment)
    assert params.channel is Channel.WECHATPAY
    assert params.params["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")
    assert (await adapter.create_payment(payment)).channel is Channel.WECHATPAY  # same order again
    with pytest.raises(ChannelRefused) as conflict:
        await adapter.create_payment(replace(payment, amount_fen=1))
    assert conflict.value.code == "INVALID_REQUEST"

    with pytest.raises(ChannelRefused) as unpaid:
        await adapter.refund(refund_of(payment, "RF-" + payment.out_trade_no, 100))
    assert unpaid.value.code == "TRADE_ERROR"
    await pay(http, simulator, "wechatpay", payment.out_trade_no)

    first = refund_of(payment, "RF1-" + payment.out_trade_no, 12_000)
    answer = await adapter.refund(first)
    assert answer.state is RefundState.PROCESSING and answer.refund_id
    assert (await adapter.refund(first)).refund_id == answer.refund_id  # idempotent
    with pytest.raises(ChannelRefused) as too_much:
        await adapter.refund(refund_of(payment, "RF2-" + payment.out_trade_no, 346))
    assert too_much.value.code == "INVALID_REQUEST"
    deadline = time.monotonic() + 5
    while (
        queried := await adapter.query_refund(payment.app_id, first.out_refund_no)
    ).state is RefundState.PROCESSING:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    assert queried.state is RefundState.SUCCESS and queried.refund_id == answer.refund_id
    last = await adapter.refund(
        refund_of(payment, "RF3-" + payment.out_trade_no, 345)
    )  # what is left
    assert last.state is RefundState.PROCESSING
    with pytest.raises(ChannelRefused) as missing:
        await adapter.query_refund(payment.app_id, "RF-NEVER-SENT")
    assert missing.value.code == REFUND_NOT_FOUND


async def test_wechatpay_jsapi_params_are_signed_by_the_merchant(
    session: aiohttp.ClientSession,
    keys: StaticKeys,
    simulator: ThreadedServer,
    merchant: MerchantKeys,
) -> None:
    adapter = WechatPayHttp(session, simulator.url, keys, retries=0)
    params = (
        await adapter.create_payment(
            order(Channel.WECHATPAY, merchant.appid, payer_openid="oPayer1")
        )
    ).params
    assert params["package"].startswith("prepay_id=wx") and params["signType"] == "RSA"
    message = (
        f"{params['appId']}\n{params['timeStamp']}\n{params['nonceStr']}\n{params['package']}\n"
    )
    assert rsa_sha256_verify(
        message.encode(), params["paySign"], load_public_key(merchant.wechatpay_pair[1])
    )


async def test_wechatpay_answers_that_do_not_verify_are_not_believed(
    session: aiohttp.ClientSession, keys: StaticKeys, simulator: ThreadedServer
) -> None:
    other = load_public_key(generate_rsa_keypair()[1])
    wrong = replace(
        keys.wechatpay_keys, platform_keys=dict.fromkeys(keys.wechatpay_keys.platform_keys, other)
    )
    keys_with_wrong_platform = StaticKeys.__new__(StaticKeys)
    keys_with_wrong_platform.wechatpay_keys, keys_with_wrong_platform.alipay_keys = (
        wrong,
        keys.alipay_keys,
    )
    sleeps = Sleeps()
    adapter = WechatPayHttp(
        session, simulator.url, keys_with_wrong_platform, retries=2, sleep=sleeps
    )
    with pytest.raises(ChannelUnavailable, match="does not verify"):
        await adapter.create_payment(order(Channel.WECHATPAY, wrong.app.app_id))
    assert len(sleeps.waits) == 2  # asked three times, with the same out_trade_no


async def test_wechatpay_refuses_a_request_signed_with_another_key(
    session: aiohttp.ClientSession, keys: StaticKeys, simulator: ThreadedServer
) -> None:
    from fundhub.common.signing import load_private_key

    forged = replace(
        keys.wechatpay_keys, merchant_private_key=load_private_key(generate_rsa_keypair()[0])
    )
    source = StaticKeys.__new__(StaticKeys)
    source.wechatpay_keys, source.alipay_keys = forged, keys.alipay_keys
    with pytest.raises(ChannelRefused) as refused:
        await WechatPayHttp(session, simulator.url, source, retries=0).create_payment(
            order(Channel.WECHATPAY, forged.app.app_id)
        )
    assert refused.value.code == "SIGN_ERROR"


# --- Alipay ----------------------------------------------------------------------------------------


async def test_alipay_precreate_refund_and_query(
    session: aiohttp.ClientSession,
    keys: StaticKeys,
    http: httpx.AsyncClient,
    simulator: ThreadedServer,
) -> None:
    adapter = AlipayHttp(session, f"{simulator.url}/gateway.do", keys, retries=0)
    payment = order(Channel.ALIPAY, keys.alipay_keys.app.app_id, amount_fen=1_001)
    params = await adapter.create_payment(payment)
    assert params.params["qr_code"].startswith("https://qr.alipay.com/")
    with pytest.raises(ChannelRefused) as unpaid:
        await adapter.refund(refund_of(payment, "A-RF0", 1))
    assert unpaid.value.code == "ACQ.TRADE_STATUS_ERROR"
    await pay(http, simulator, "alipay", payment.out_trade_no)

    first = refund_of(payment, "A-RF1-" + payment.out_trade_no, 1_000)
    assert (await adapter.refund(first)).state is RefundState.SUCCESS
    again = await adapter.refund(first)  # fund_change N: the query confirms it
    assert again.state is RefundState.SUCCESS
    with pytest.raises(ChannelRefused) as too_much:
        await adapter.refund(refund_of(payment, "A-RF2-" + payment.out_trade_no, 2))
    assert too_much.value.code == "ACQ.REFUND_FEE_ERROR"
    with pytest.raises(ChannelRefused) as conflict:
        await adapter.refund(replace(first, refund_fen=1))
    assert conflict.value.code == "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"
    queried = await adapter.query_refund(payment.app_id, first.out_refund_no, payment.out_trade_no)
    assert queried.state is RefundState.SUCCESS
    with pytest.raises(ChannelRefused) as missing:
        await adapter.query_refund(payment.app_id, "A-NEVER", payment.out_trade_no)
    assert missing.value.code == REFUND_NOT_FOUND
    with pytest.raises(ValueError):
        await adapter.query_refund(payment.app_id, first.out_refund_no)


async def test_alipay_a_request_with_another_key_is_refused_unsigned(
    session: aiohttp.ClientSession, keys: StaticKeys, simulator: ThreadedServer
) -> None:
    from fundhub.common.signing import load_private_key

    source = StaticKeys.__new__(StaticKeys)
    source.wechatpay_keys = keys.wechatpay_keys
    source.alipay_keys = replace(
        keys.alipay_keys, app_private_key=load_private_key(generate_rsa_keypair()[0])
    )
    with pytest.raises(ChannelRefused) as refused:
        await AlipayHttp(session, f"{simulator.url}/gateway.do", source, retries=0).create_payment(
            order(Channel.ALIPAY, source.alipay_keys.app.app_id)
        )
    assert refused.value.code == "isv.invalid-signature"


# --- the notices they send ------------------------------------------------------------------------


async def test_notices_verify_decrypt_and_follow_the_retry_schedules(
    session: aiohttp.ClientSession,
    keys: StaticKeys,
    http: httpx.AsyncClient,
    simulator: ThreadedServer,
) -> None:
    received: dict[str, list[tuple[dict[str, str], bytes, float]]] = {"wechatpay": [], "alipay": []}
    failures = {"wechatpay": 2, "alipay": 1}  # answered wrong this many times first

    async def take(request: web.Request) -> web.StreamResponse:
        channel = request.path.rsplit("/", 1)[-1]
        headers = {k.lower(): v for k, v in request.headers.items()}
        received[channel].append((headers, await request.read(), time.monotonic()))
        if failures[channel] > 0:
            failures[channel] -= 1
            return (
                web.Response(status=500, text="busy")
                if channel == "wechatpay"
                else web.Response(text="fail")
            )
        return web.Response(status=204) if channel == "wechatpay" else web.Response(text="success")

    app = posts_to("/cb/wechatpay", take)
    app.router.add_post("/cb/alipay", take)
    async with serving(app) as base:
        wechat = WechatPayHttp(session, simulator.url, keys, retries=0)
        ali = AlipayHttp(session, f"{simulator.url}/gateway.do", keys, retries=0)
        w = order(Channel.WECHATPAY, keys.wechatpay_keys.app.app_id, f"{base}/cb/wechatpay")
        a = order(Channel.ALIPAY, keys.alipay_keys.app.app_id, f"{base}/cb/alipay")
        await wechat.create_payment(w)
        await ali.create_payment(a)
        await pay(http, simulator, "wechatpay", w.out_trade_no)
        await pay(http, simulator, "alipay", a.out_trade_no)
        deadline = time.monotonic() + 10
        while len(received["wechatpay"]) < 3 or len(received["alipay"]) < 2:
            assert time.monotonic() < deadline, received
            await asyncio.sleep(0.01)

    # WeChat Pay: three deliveries (15 s, 15 s scaled apart), each signed anew, one id.
    bodies = {body for _, body, _ in received["wechatpay"]}
    assert len(bodies) == 1
    timestamps = [
        (h["wechatpay-nonce"], h["wechatpay-signature"]) for h, _, _ in received["wechatpay"]
    ]
    assert len(set(timestamps)) == 3
    gaps = [
        b[2] - a[2] for a, b in zip(received["wechatpay"], received["wechatpay"][1:], strict=False)
    ]
    assert all(gap >= WECHATPAY_RETRIES_S[0] * FACTOR * 0.9 for gap in gaps)
    headers, body, _ = received["wechatpay"][-1]
    notification = wechatpay.parse_notification(body)
    signed = wechatpay.read_signed_headers(headers)
    wechatpay.check_timestamp(signed, utcnow())
    assert signed.verifies(body, keys.wechatpay_keys.platform_keys[signed.serial])
    event = wechatpay.event_of(
        notification, notification.resource.decrypt(keys.wechatpay_keys.apiv3_key), w.app_id
    )
    assert (event.kind, event.out_trade_no, event.total_fen) == (
        EventKind.PAYMENT,
        w.out_trade_no,
        12_345,
    )

    # Alipay: retried after its first interval (4 min scaled), same notify_id, verified.
    (_, first, t1), (_, second, t2) = received["alipay"][:2]
    assert t2 - t1 >= ALIPAY_RETRIES_S[0] * FACTOR * 0.9
    one, two = alipay.parse_form(first), alipay.parse_form(second)
    assert one["notify_id"] == two["notify_id"]
    assert alipay.verifies(two, keys.alipay_keys.alipay_public_key)
    alipay_event = alipay.event_of(two)
    assert alipay_event is not None and alipay_event.kind is EventKind.PAYMENT
    assert alipay_event.total_fen == 12_345


async def test_refund_notices(
    session: aiohttp.ClientSession,
    keys: StaticKeys,
    http: httpx.AsyncClient,
    simulator: ThreadedServer,
) -> None:
    events: list[Any] = []

    async def take(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.path.endswith("wechatpay"):
            notification = wechatpay.parse_notification(body)
            plain = notification.resource.decrypt(keys.wechatpay_keys.apiv3_key)
            events.append(wechatpay.event_of(notification, plain, keys.wechatpay_keys.app.app_id))
            return web.Response(status=204)
        events.append(alipay.event_of(alipay.parse_form(body)))
        return web.Response(text="success")

    app = posts_to("/cb/wechatpay", take)
    app.router.add_post("/cb/alipay", take)
    async with serving(app) as base:
        w = order(Channel.WECHATPAY, keys.wechatpay_keys.app.app_id, f"{base}/cb/wechatpay")
        a = order(Channel.ALIPAY, keys.alipay_keys.app.app_id, f"{base}/cb/alipay", amount_fen=500)
        await WechatPayHttp(session, simulator.url, keys, retries=0).create_payment(w)
        await AlipayHttp(session, f"{simulator.url}/gateway.do", keys, retries=0).create_payment(a)
        await pay(http, simulator, "wechatpay", w.out_trade_no)
        await pay(http, simulator, "alipay", a.out_trade_no)
        await WechatPayHttp(session, simulator.url, keys, retries=0).refund(
            refund_of(w, "WR-" + w.out_trade_no, 45, f"{base}/cb/wechatpay")
        )
        ali = AlipayHttp(session, f"{simulator.url}/gateway.do", keys, retries=0)
        await ali.refund(refund_of(a, "AR1-" + a.out_trade_no, 200))
        await ali.refund(refund_of(a, "AR2-" + a.out_trade_no, 300))
        deadline = time.monotonic() + 10
        while len(events) < 5:
            assert time.monotonic() < deadline, events
            await asyncio.sleep(0.01)
    refunds = {e.out_refund_no: e for e in events if e.kind is EventKind.REFUND}
    wechat_refund = refunds["WR-" + w.out_trade_no]
    assert (wechat_refund.refund_fen, wechat_refund.refund_status) == (45, RefundStatus.SUCCESS)
    assert refunds["AR1-" + a.out_trade_no].refunded_total_fen == 200
    assert refunds["AR2-" + a.out_trade_no].refunded_total_fen == 500  # in all: the trade closes
