"""Alipay async notify: strict form parsing, the canonical string, RSA2 under Alipay's key, the
owner check, yuan into exact fen, and the answers of its gateway. Keys are TEST keys made per
run."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from fundhub.channel_simulator.notices import alipay_fields, sign_alipay
from fundhub.channels import alipay
from fundhub.channels.events import Channel, ChannelEvent, EventKind, RefundStatus
from fundhub.channels.notification import NotificationRefused, RefusalKind
from fundhub.common.clock import BANK_TZ
from fundhub.common.money import MoneyError, format_yuan, parse_yuan
from fundhub.common.signing import generate_rsa_keypair, load_private_key, load_public_key

NOW = datetime(2026, 11, 30, 4, 0, 0, tzinfo=UTC)
APP_ID, SELLER_ID = "2021000000000001", "2088000000000001"


@cache
def alipay_keys() -> tuple[RSAPrivateKey, RSAPublicKey]:
    private_pem, public_pem = generate_rsa_keypair()
    return load_private_key(private_pem), load_public_key(public_pem)


def fields(**change: Any) -> dict[str, str]:
    base = alipay_fields(
        app_id=APP_ID,
        seller_id=SELLER_ID,
        out_trade_no="ORD-A-1",
        trade_no="2026113022001400000000000001",
        trade_status="TRADE_SUCCESS",
        total_fen=12_30,
        subject="测试商品 & 其他",
        gmt_create=NOW,
        gmt_payment=NOW,
        notify_id="ac05099524730693a8b330c5ecf72da9786",
    )
    base.update(change)
    return {k: v for k, v in base.items() if v is not None}


def form(**change: Any) -> bytes:
    return sign_alipay(fields(**change), alipay_keys()[0], NOW)


def accept(body: bytes) -> ChannelEvent | None:
    """What the gateway does, in its order, with the one app trusted."""
    params = alipay.parse_form(body)
    alipay.check_public(params)
    if params["app_id"] != APP_ID:
        raise NotificationRefused(RefusalKind.UNVERIFIED, "unknown app")
    if not alipay.verifies(params, alipay_keys()[1]):
        raise NotificationRefused(RefusalKind.UNVERIFIED, "sign")
    alipay.check_owner(params, APP_ID, SELLER_ID)
    return alipay.event_of(params)


def refused(kind: RefusalKind, body: bytes) -> None:
    with pytest.raises(NotificationRefused) as caught:
        accept(body)
    assert caught.value.kind is kind, caught.value.reason


def resigned(body: bytes, **change: str) -> bytes:
    """The form changed, then signed again correctly: only the content is wrong."""
    params = dict(parse_qsl(body.decode()))
    params.update(change)
    params.pop("sign")
    params["sign"] = alipay.sign_notification(params, alipay_keys()[0])
    return urlencode(params).encode()


def test_a_payment_becomes_exactly_this_event() -> None:
    assert accept(form()) == ChannelEvent(
        channel=Channel.ALIPAY,
        kind=EventKind.PAYMENT,
        app_id=APP_ID,
        merchant_ref=SELLER_ID,
        notification_id="ac05099524730693a8b330c5ecf72da9786",
        out_trade_no="ORD-A-1",
        transaction_id="2026113022001400000000000001",
        total_fen=1230,
        occurred_at=NOW.astimezone(BANK_TZ),
    )


def test_trade_finished_is_a_payment_and_trade_closed_a_close() -> None:
    finished = accept(form(trade_status="TRADE_FINISHED"))
    assert finished is not None and finished.kind is EventKind.PAYMENT
    closed = accept(
        form(trade_status="TRADE_CLOSED", gmt_payment=None, gmt_close="2026-11-30 12:30:00")
    )
    assert closed is not None and closed.kind is EventKind.CLOSED
    assert closed.occurred_at == datetime(2026, 11, 30, 12, 30, tzinfo=BANK_TZ)


def test_a_partial_refund_carries_its_number_and_the_total_refunded() -> None:
    event = accept(
        form(out_biz_no="RF-A-1", refund_fee="3.5", gmt_refund="2026-11-30 12:01:02.345")
    )
    assert event is not None
    assert (event.kind, event.out_refund_no, event.refund_status) == (
        EventKind.REFUND,
        "RF-A-1",
        RefundStatus.SUCCESS,
    )
    assert (event.refunded_total_fen, event.refund_fen, event.total_fen) == (350, None, 1230)
    assert event.occurred_at == datetime(2026, 11, 30, 12, 1, 2, 345_000, tzinfo=BANK_TZ)


def test_a_full_refund_closes_the_trade_and_is_a_refund() -> None:
    event = accept(form(trade_status="TRADE_CLOSED", out_biz_no="RF-A-2", refund_fee="12.30"))
    assert event is not None and event.kind is EventKind.REFUND
    assert event.refunded_total_fen == 1230


def test_wait_buyer_pay_is_acknowledged_with_nothing_to_publish() -> None:
    assert accept(form(trade_status="WAIT_BUYER_PAY")) is None


def test_the_canonical_string_drops_sign_and_sign_type_and_sorts() -> None:
    params = {"b": "2", "sign": "x", "sign_type": "RSA2", "a": "1 + 1", "c": "三"}
    assert alipay.canonical_string(params) == "a=1 + 1&b=2&c=三".encode()


# --- refusals --------------------------------------------------------------------------------------


def test_a_tampered_parameter_is_unverified() -> None:
    params = dict(parse_qsl(form().decode()))
    params["total_amount"] = "0.01"
    refused(RefusalKind.UNVERIFIED, urlencode(params).encode())


def test_a_tampered_amount_in_any_parameter_is_unverified() -> None:
    for name, value in (
        ("out_trade_no", "ORD-A-2"),
        ("subject", "x"),
        ("gmt_payment", "2026-12-01 00:00:00"),
    ):
        params = dict(parse_qsl(form().decode()))
        params[name] = value
        refused(RefusalKind.UNVERIFIED, urlencode(params).encode())


def test_a_signature_by_another_key_is_unverified() -> None:
    other = load_private_key(generate_rsa_keypair()[0])
    refused(RefusalKind.UNVERIFIED, sign_alipay(fields(), other, NOW))


def test_another_sellers_notification_is_unverified() -> None:
    refused(RefusalKind.UNVERIFIED, form(seller_id="2088999999999999"))


def test_sign_type_other_than_rsa2_is_unverified() -> None:
    refused(RefusalKind.UNVERIFIED, resigned(form(), sign_type="RSA"))


HOSTILE: dict[str, bytes] = {
    "a parameter twice": form() + b"&total_amount=0.01",
    "a parameter twice, empty first": b"app_id=&" + form(),
    "not UTF-8": form() + b"&subject2=%FF%FE",
    "raw bytes not UTF-8": b"a=\xff",
    "a field without =": form() + b"&orphan",
    "too many parameters": b"&".join(b"p%d=1" % i for i in range(70)),
    "too large": b"a=" + b"x" * alipay.MAX_NOTIFY_BYTES,
    "an odd name": form() + b"&Bad-Name=1",
    "NUL in a value": form() + b"&extra=a%00b",
    "no notify_id": resigned(form(), notify_id=""),
    "charset gbk": resigned(form(), charset="gbk"),
    "another notify_type": resigned(form(), notify_type="batch_trans_notify"),
    "unknown trade_status": resigned(form(), trade_status="TRADE_PENDING"),
    "total as 1e3": resigned(form(), total_amount="1e3"),
    "total negative": resigned(form(), total_amount="-1.00"),
    "total three decimals": resigned(form(), total_amount="12.345"),
    "total with a space": resigned(form(), total_amount=" 12.30"),
    "refund_fee without out_biz_no": resigned(form(), refund_fee="1.00"),
    "refund of a finished trade": resigned(
        form(), trade_status="TRADE_FINISHED", out_biz_no="R1", refund_fee="1.00"
    ),
    "bad notify_time": resigned(form(), notify_time="2026/11/30 12:00:00"),
    "out_trade_no too long": resigned(form(), out_trade_no="x" * 65),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_bodies_are_malformed(case: str) -> None:
    refused(RefusalKind.MALFORMED, HOSTILE[case])


def test_empty_parameters_are_outside_the_signature_and_dropped() -> None:
    params = alipay.parse_form(form() + b"&body=")
    assert "body" not in params
    assert accept(form() + b"&body=") is not None


# --- yuan, exactly ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fen"),
    [("12.3", 1230), ("12.30", 1230), ("0.01", 1), ("0", 0), ("0.29", 29), ("100000000", 10**10)],
)
def test_yuan_to_fen(text: str, fen: int) -> None:
    assert parse_yuan(text) == fen


@pytest.mark.parametrize(
    "text",
    [
        "1e3",
        "-1",
        "12.345",
        " 1",
        "1 ",
        "1.",
        ".5",
        "01",
        "+1",
        "",
        "１",
        "1,000",
        "0x10",
        "NaN",
        "1_000",
    ],
)
def test_yuan_refused(text: str) -> None:
    with pytest.raises(MoneyError):
        parse_yuan(text)


def test_fen_to_yuan() -> None:
    assert [format_yuan(f) for f in (0, 1, 29, 1230, 10**10)] == [
        "0.00",
        "0.01",
        "0.29",
        "12.30",
        "100000000.00",
    ]


# --- answers of the gateway ------------------------------------------------------------------------


def test_a_signed_answer_verifies_over_the_exact_text_of_its_node() -> None:
    private_key, public_key = alipay_keys()
    node = {
        "code": "10000",
        "msg": "Success",
        "out_trade_no": "O1",
        "qr_code": "https://qr.alipay.com/x",
    }
    body = alipay.signed_answer("alipay.trade.precreate", node, private_key)
    answer = alipay.read_answer(body, "alipay.trade.precreate")
    assert answer.node == node and answer.code == "10000" and answer.verifies(public_key)
    spaced = body.replace(b'{"alipay', b'{ "alipay').replace(b'":{', b'": {', 1)
    assert alipay.read_answer(spaced, "alipay.trade.precreate").verifies(public_key)
    forged = body.replace(b"https://qr.alipay.com/x", b"https://evil.example/x")
    assert not alipay.read_answer(forged, "alipay.trade.precreate").verifies(public_key)


def test_an_answer_without_its_node_is_refused() -> None:
    with pytest.raises(ValueError):
        alipay.read_answer(b'{"other_response":{},"sign":"x"}', "alipay.trade.refund")
    with pytest.raises(ValueError):
        alipay.read_answer(
            b'{"alipay_trade_refund_response":{},"alipay_trade_refund_response":{}}',
            "alipay.trade.refund",
        )


def test_a_request_is_signed_over_every_parameter_but_sign() -> None:
    private_key, public_key = alipay_keys()
    params = alipay.request_params(
        APP_ID,
        "alipay.trade.precreate",
        {"out_trade_no": "O1"},
        private_key,
        NOW,
        "https://n.example/cb",
    )
    assert params["timestamp"] == "2026-11-30 12:00:00" and params["sign_type"] == "RSA2"
    assert alipay.request_verifies(params, public_key)
    assert not alipay.request_verifies({**params, "notify_url": "https://evil.example"}, public_key)
