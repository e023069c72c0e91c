"""WeChat Pay APIv3 notifications: signature over ``timestamp\\nnonce\\nbody\\n`` by the serial's
platform key, the five-minute window, AES-256-GCM under the APIv3 key, the resources read into
``ChannelEvent``s, and every refusal of the issue's acceptance. Keys are TEST keys made per run."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from fundhub.channel_simulator.notices import (
    WechatPayNotice,
    refund_resource,
    sign_wechatpay,
    transaction_resource,
    wechatpay_body,
)
from fundhub.channels import wechatpay
from fundhub.channels.events import Channel, ChannelEvent, EventKind, RefundStatus
from fundhub.channels.notification import NotificationRefused, RefusalKind
from fundhub.common.clock import BANK_TZ
from fundhub.common.signing import generate_rsa_keypair, load_private_key, load_public_key

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
APPID, MCHID, SERIAL = "wxd678efh567hg6787", "1230000109", "5157F09EFDC096DE15EBE81A47057A72"
APIV3_KEY = b"TEST-ONLY-apiv3-key-32-bytes-000"  # a TEST key, 32 bytes


@cache
def platform() -> tuple[RSAPrivateKey, RSAPublicKey]:
    private_pem, public_pem = generate_rsa_keypair()
    return load_private_key(private_pem), load_public_key(public_pem)


def paid_body(**change: Any) -> bytes:
    resource = transaction_resource(
        appid=APPID,
        mchid=MCHID,
        out_trade_no="ORD-0001",
        transaction_id="4200000000000000000000000001",
        total_fen=12_345,
        success_time=NOW - timedelta(seconds=3),
    )
    resource.update(change)
    return wechatpay_body("EV-018352", "TRANSACTION.SUCCESS", resource, APIV3_KEY, NOW)


def refund_body(event_type: str = "REFUND.SUCCESS", status: str = "SUCCESS") -> bytes:
    resource = refund_resource(
        mchid=MCHID,
        out_trade_no="ORD-0001",
        transaction_id="4200000000000000000000000001",
        out_refund_no="RF-0001",
        refund_id="50300000000000000000000001",
        refund_status=status,
        total_fen=12_345,
        refund_fen=2_000,
        success_time=NOW if status == "SUCCESS" else None,
    )
    return wechatpay_body("EV-77", event_type, resource, APIV3_KEY, NOW)


def signed(body: bytes, at: datetime = NOW, key: RSAPrivateKey | None = None) -> WechatPayNotice:
    return sign_wechatpay(body, key or platform()[0], SERIAL, at)


def accept(
    notice: WechatPayNotice,
    keys: dict[str, RSAPublicKey] | None = None,
    apiv3_key: bytes = APIV3_KEY,
    now: datetime = NOW,
) -> ChannelEvent:
    """What the gateway does, in its order, with one app trusted."""
    trusted = keys if keys is not None else {SERIAL: platform()[1]}
    notification = wechatpay.parse_notification(notice.body)
    headers = {k.lower(): v for k, v in notice.headers.items()}
    sig = wechatpay.read_signed_headers(headers)
    wechatpay.check_timestamp(sig, now)
    key = trusted.get(sig.serial)
    if key is None or not sig.verifies(notice.body, key):
        raise NotificationRefused(RefusalKind.UNVERIFIED, "signature")
    event = wechatpay.event_of(notification, notification.resource.decrypt(apiv3_key), APPID)
    wechatpay.check_owner(event, APPID, MCHID)
    return event


def refused(kind: RefusalKind, call: Callable[[], object]) -> str:
    with pytest.raises(NotificationRefused) as caught:
        call()
    assert caught.value.kind is kind
    return caught.value.reason


def test_a_payment_becomes_exactly_this_event() -> None:
    event = accept(signed(paid_body()))
    assert event == ChannelEvent(
        channel=Channel.WECHATPAY,
        kind=EventKind.PAYMENT,
        app_id=APPID,
        merchant_ref=MCHID,
        notification_id="EV-018352",
        out_trade_no="ORD-0001",
        transaction_id="4200000000000000000000000001",
        total_fen=12_345,
        occurred_at=(NOW - timedelta(seconds=3)).astimezone(BANK_TZ),
    )
    assert event.message_id() == "WECHATPAY:EV-018352"


@pytest.mark.parametrize(
    ("event_type", "status", "expected"),
    [
        ("REFUND.SUCCESS", "SUCCESS", RefundStatus.SUCCESS),
        ("REFUND.CLOSED", "CLOSED", RefundStatus.CLOSED),
        ("REFUND.ABNORMAL", "ABNORMAL", RefundStatus.ABNORMAL),
    ],
)
def test_refund_events(event_type: str, status: str, expected: RefundStatus) -> None:
    event = accept(signed(refund_body(event_type, status)))
    assert event.kind is EventKind.REFUND
    assert event.app_id == APPID  # a refund's resource names only the mchid
    assert (event.out_refund_no, event.refund_id) == ("RF-0001", "50300000000000000000000001")
    assert (event.total_fen, event.refund_fen, event.refund_status) == (12_345, 2_000, expected)


def test_the_signed_message_is_three_lines_each_ending_in_a_newline() -> None:
    assert (
        wechatpay.signed_message("1554208460", "abc", b'{"a":1}') == b'1554208460\nabc\n{"a":1}\n'
    )


# --- the refusals of the acceptance ----------------------------------------------------------


def test_a_tampered_body_is_unverified() -> None:
    notice = signed(paid_body())
    document = orjson.loads(notice.body)
    document["id"] = "EV-999"
    tampered = replace(notice, body=orjson.dumps(document))
    refused(RefusalKind.UNVERIFIED, lambda: accept(tampered))


def test_a_tampered_signature_is_unverified() -> None:
    notice = signed(paid_body())
    raw = bytearray(base64.b64decode(notice.headers["Wechatpay-Signature"]))
    raw[10] ^= 1
    headers = {**notice.headers, "Wechatpay-Signature": base64.b64encode(raw).decode()}
    refused(RefusalKind.UNVERIFIED, lambda: accept(replace(notice, headers=headers)))


def test_an_unknown_serial_is_unverified() -> None:
    notice = signed(paid_body())
    refused(RefusalKind.UNVERIFIED, lambda: accept(notice, keys={"OTHER": platform()[1]}))


def test_a_signature_by_another_key_under_a_known_serial_is_unverified() -> None:
    other = load_private_key(generate_rsa_keypair()[0])
    refused(RefusalKind.UNVERIFIED, lambda: accept(signed(paid_body(), key=other)))


def test_several_serials_trusted_at_once() -> None:
    other_private, other_public = (lambda p: (load_private_key(p[0]), load_public_key(p[1])))(
        generate_rsa_keypair()
    )
    keys = {SERIAL: platform()[1], "NEW-SERIAL": other_public}
    old = signed(paid_body())
    new = sign_wechatpay(paid_body(), other_private, "NEW-SERIAL", NOW)
    assert accept(old, keys) == accept(new, keys)


def test_a_wrong_apiv3_key_fails_the_tag() -> None:
    reason = refused(
        RefusalKind.UNVERIFIED,
        lambda: accept(signed(paid_body()), apiv3_key=b"another-TEST-apiv3-key-32-bytes!"),
    )
    assert "APIv3" in reason


def test_a_changed_ciphertext_fails_the_tag_even_when_resigned() -> None:
    document = orjson.loads(paid_body())
    sealed = bytearray(base64.b64decode(document["resource"]["ciphertext"]))
    sealed[-1] ^= 1  # the last 16 bytes are the tag
    document["resource"]["ciphertext"] = base64.b64encode(sealed).decode()
    refused(RefusalKind.UNVERIFIED, lambda: accept(signed(orjson.dumps(document))))


@pytest.mark.parametrize("minutes", [6, -6, 5])
def test_a_timestamp_five_minutes_or_more_off_is_refused(minutes: int) -> None:
    notice = signed(paid_body(), at=NOW + timedelta(minutes=minutes))
    refused(RefusalKind.UNVERIFIED, lambda: accept(notice))


def test_a_timestamp_within_the_window_passes() -> None:
    accept(signed(paid_body(), at=NOW - timedelta(minutes=4, seconds=59)))


def test_another_apps_notification_is_unverified() -> None:
    for change in ({"mchid": "1999999999"}, {"appid": "wx0000000000000000"}):
        refused(RefusalKind.UNVERIFIED, lambda c=change: accept(signed(paid_body(**c))))


@pytest.mark.parametrize(
    "header", ["Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature", "Wechatpay-Serial"]
)
def test_a_missing_signing_header_is_unverified(header: str) -> None:
    notice = signed(paid_body())
    headers = {k: v for k, v in notice.headers.items() if k != header}
    refused(RefusalKind.UNVERIFIED, lambda: accept(replace(notice, headers=headers)))


# --- hostile and odd bodies ------------------------------------------------------------------------


def _envelope(change: Callable[[dict[str, Any]], None]) -> bytes:
    document = orjson.loads(paid_body())
    change(document)
    return orjson.dumps(document)


HOSTILE: dict[str, bytes] = {
    "not JSON": b"{not json",
    "a JSON array": b"[]",
    "a key twice": paid_body().replace(b'{"id":', b'{"id":"EV-1","id":', 1),
    "too large": b'{"id":"' + b"x" * (wechatpay.MAX_NOTIFICATION_BYTES) + b'"}',
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "unknown event type": _envelope(lambda d: d.__setitem__("event_type", "PROFITSHARING.X")),
    "plain resource": _envelope(lambda d: d.__setitem__("resource_type", "plain")),
    "other algorithm": _envelope(lambda d: d["resource"].__setitem__("algorithm", "AES_128_CBC")),
    "short nonce": _envelope(lambda d: d["resource"].__setitem__("nonce", "abc")),
    "ciphertext not base64": _envelope(lambda d: d["resource"].__setitem__("ciphertext", "@@@")),
    "ciphertext only a tag": _envelope(
        lambda d: d["resource"].__setitem__("ciphertext", base64.b64encode(b"t" * 16).decode())
    ),
    "id not a string": _envelope(lambda d: d.__setitem__("id", 12)),
    "NUL in the id": _envelope(lambda d: d.__setitem__("id", "EV\u0000")),
    "bad create_time": _envelope(lambda d: d.__setitem__("create_time", "yesterday")),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_bodies_are_malformed_before_any_signature_work(case: str) -> None:
    refused(RefusalKind.MALFORMED, lambda: wechatpay.parse_notification(HOSTILE[case]))


RESOURCES: dict[str, dict[str, Any]] = {
    "amount as a string": {"amount": {"total": "12345", "currency": "CNY"}},
    "amount negative": {"amount": {"total": -1, "currency": "CNY"}},
    "amount a float": {"amount": {"total": 123.45, "currency": "CNY"}},
    "amount true": {"amount": {"total": True, "currency": "CNY"}},
    "another currency": {"amount": {"total": 100, "currency": "USD"}},
    "trade not paid": {"trade_state": "NOTPAY"},
    "out_trade_no too long": {"out_trade_no": "x" * 65},
    "success_time without offset": {"success_time": "2026-11-30T12:00:00"},
}


@pytest.mark.parametrize("case", list(RESOURCES))
def test_a_verified_resource_of_the_wrong_shape_is_malformed(case: str) -> None:
    refused(RefusalKind.MALFORMED, lambda: accept(signed(paid_body(**RESOURCES[case]))))


def test_a_refund_event_whose_status_disagrees_is_malformed() -> None:
    refused(RefusalKind.MALFORMED, lambda: accept(signed(refund_body("REFUND.SUCCESS", "CLOSED"))))


# --- our requests -----------------------------------------------------------------------------------


def test_authorization_header_round_trip() -> None:
    merchant_private, merchant_public = platform()
    header = wechatpay.authorization(
        MCHID, "MERCHANT-SERIAL", merchant_private, "POST", "/v3/pay/transactions/native",
        b'{"a":1}', "1554208460", "593BEC0C930BF1AFEB40B4A08C8FB242",
    )  # fmt: skip
    assert header.startswith('WECHATPAY2-SHA256-RSA2048 mchid="1230000109",nonce_str="593BEC0C')
    auth = wechatpay.parse_authorization(header)
    assert auth.serial_no == "MERCHANT-SERIAL"
    assert auth.verifies("POST", "/v3/pay/transactions/native", b'{"a":1}', merchant_public)
    assert not auth.verifies("POST", "/v3/pay/transactions/native", b'{"a":2}', merchant_public)
    with pytest.raises(ValueError):
        wechatpay.parse_authorization(header.replace("WECHATPAY2", "WECHATPAY3"))
