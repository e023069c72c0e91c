"""The gateway's channel intake with a fake app store and publisher: what is published (topic,
key, id), that nothing is answered as accepted unless Kafka took it, and how each refusal reads
in each channel's terms. TEST keys made per run."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from fundhub.channel_simulator import notices
from fundhub.channels.apps import AlipayKeys, ChannelApp, WechatPayKeys
from fundhub.channels.events import EVENT_TYPE, Channel, ChannelEvent
from fundhub.common.clock import utcnow
from fundhub.common.errors import ErrorCode
from fundhub.common.kafka import OutgoingMessage, PublishFailed
from fundhub.common.signing import generate_rsa_keypair, load_private_key, load_public_key
from fundhub.common.topics import Topics
from fundhub.gateway.channel_callbacks import (
    ChannelNotificationIntake,
    alipay_answer,
    alipay_refusal,
    signing_headers,
    wechatpay_answer,
    wechatpay_refusal,
)

APIV3 = b"TEST-ONLY-apiv3-key-32-bytes-000"
SERIAL = "SERIAL-1"


@cache
def pair() -> tuple[RSAPrivateKey, RSAPublicKey]:
    private_pem, public_pem = generate_rsa_keypair()
    return load_private_key(private_pem), load_public_key(public_pem)


def wechat_app(appid: str, mchid: str, key: RSAPublicKey) -> WechatPayKeys:
    app = ChannelApp(Channel.WECHATPAY, appid, mchid, True, (SERIAL,))
    return WechatPayKeys(app=app, apiv3_key=APIV3, platform_keys={SERIAL: key})


@dataclass
class FakeApps:
    wechat: tuple[WechatPayKeys, ...] = ()
    ali: AlipayKeys | None = None

    async def wechatpay_by_serial(self, serial: str) -> tuple[WechatPayKeys, ...]:
        return self.wechat if serial == SERIAL else ()

    async def alipay(self, app_id: str) -> AlipayKeys | None:
        return self.ali if self.ali and app_id == self.ali.app.app_id else None


@dataclass
class FakePublisher:
    fail: bool = False
    sent: list[OutgoingMessage] = field(default_factory=list)

    async def send_many(self, messages: list[OutgoingMessage]) -> None:
        if self.fail:
            raise PublishFailed("broker away")
        self.sent.extend(messages)


def intake(apps: FakeApps, publisher: FakePublisher) -> ChannelNotificationIntake:
    return ChannelNotificationIntake(Topics("t"), apps, publisher)  # type: ignore[arg-type]


def wechat_notice(mchid: str = "1900000001") -> tuple[dict[str, str], bytes]:
    now = utcnow()
    resource = notices.transaction_resource(
        appid="wx1", mchid=mchid, out_trade_no="ORD-9", transaction_id="42000001", total_fen=5,
        success_time=now,
    )  # fmt: skip
    body = notices.wechatpay_body("EV-9", "TRANSACTION.SUCCESS", resource, APIV3, now)
    notice = notices.sign_wechatpay(body, pair()[0], SERIAL, now)
    return {k.lower(): v for k, v in notice.headers.items()}, notice.body


async def test_accepted_wechatpay_is_published_keyed_by_out_trade_no_under_its_message_id() -> None:
    publisher = FakePublisher()
    apps = FakeApps(wechat=(wechat_app("wx1", "1900000001", pair()[1]),))
    headers, body = wechat_notice()
    assert await intake(apps, publisher).wechatpay(headers, body, "corr-1") is None
    [message] = publisher.sent
    envelope = orjson.loads(message.value)
    assert (message.topic, message.key) == ("t.channels.notify.v1", b"ORD-9")
    assert (envelope["id"], envelope["type"], envelope["correlationId"]) == (
        "WECHATPAY:EV-9",
        EVENT_TYPE,
        "corr-1",
    )
    assert ChannelEvent.model_validate(envelope["data"]).out_trade_no == "ORD-9"
    answer = wechatpay_answer(None)
    assert (answer.status_code, answer.body) == (204, b"")


async def test_a_serial_shared_by_two_apps_is_tried_under_each() -> None:
    stranger = load_public_key(generate_rsa_keypair()[1])
    apps = FakeApps(
        wechat=(
            wechat_app("wx0", "1900000000", stranger),
            wechat_app("wx1", "1900000001", pair()[1]),
        )
    )
    publisher = FakePublisher()
    assert await intake(apps, publisher).wechatpay(*wechat_notice(), "c") is None
    assert len(publisher.sent) == 1


async def test_not_durable_is_not_accepted() -> None:
    apps = FakeApps(wechat=(wechat_app("wx1", "1900000001", pair()[1]),))
    refusal = await intake(apps, FakePublisher(fail=True)).wechatpay(*wechat_notice(), "c")
    assert refusal is not None
    answer = wechatpay_answer(refusal)
    assert answer.status_code == 503
    assert orjson.loads(answer.body) == {
        "code": "FAIL",
        "message": "temporarily unavailable, retry later",
    }


async def test_refusals_alike_and_nothing_published() -> None:
    publisher = FakePublisher()
    apps = FakeApps(wechat=(wechat_app("wx1", "1900000001", pair()[1]),))
    headers, body = wechat_notice()
    cases = {
        "unknown serial": ({**headers, "wechatpay-serial": "OTHER"}, body),
        "another app": wechat_notice(mchid="1999999999"),
        "stale": ({**headers, "wechatpay-timestamp": str(int(utcnow().timestamp()) - 360)}, body),
    }
    answers = set()
    for given in cases.values():
        refusal = await intake(apps, publisher).wechatpay(*given, "c")
        assert refusal is not None
        answer = wechatpay_answer(refusal)
        answers.add((answer.status_code, bytes(answer.body)))
    assert answers == {(401, b'{"code":"FAIL","message":"signature verification failed"}')}
    assert publisher.sent == []


def test_a_signing_header_given_twice_is_emptied() -> None:
    raw = [(b"wechatpay-serial", b"A"), (b"wechatpay-serial", b"B"), (b"host", b"x")]
    assert signing_headers(raw) == {"wechatpay-serial": ""}


async def test_alipay_wait_buyer_pay_is_acknowledged_and_not_published() -> None:
    private, public = pair()
    app = AlipayKeys(ChannelApp(Channel.ALIPAY, "2021001", "2088001", True), public)
    fields = notices.alipay_fields(
        app_id="2021001", seller_id="2088001", out_trade_no="O", trade_no="T",
        trade_status="WAIT_BUYER_PAY", total_fen=1, subject="s", gmt_create=utcnow(),
    )  # fmt: skip
    publisher = FakePublisher()
    refusal = await intake(FakeApps(ali=app), publisher).alipay(
        notices.sign_alipay(fields, private, utcnow()), "c"
    )
    assert refusal is None and publisher.sent == []
    assert (alipay_answer(None).status_code, alipay_answer(None).body) == (200, b"success")


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ErrorCode.PAYLOAD_TOO_LARGE, 413),
        (ErrorCode.RATE_LIMITED, 429),
        (ErrorCode.UNAVAILABLE, 503),
    ],
)
def test_the_pipelines_own_refusals_read_in_each_channels_terms(
    error: ErrorCode, status: int
) -> None:
    wechat = wechatpay_refusal(error, "internal detail")
    assert wechat.status_code == status and orjson.loads(wechat.body)["code"] == "FAIL"
    assert b"internal detail" not in wechat.body
    ali = alipay_refusal(error, "internal detail")
    assert (ali.status_code, ali.body) == (status, b"fail")
