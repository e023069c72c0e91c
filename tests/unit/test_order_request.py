"""Parsing POST /v1/orders and its refunds (orders.request): every refusal names its field."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from fundhub.channels.events import Channel
from fundhub.orders.request import (
    InvalidOrder,
    new_order_id,
    new_refund_id,
    parse_order_request,
    parse_refund_request,
)
from fundhub.orders.splits import SplitMismatch
from fundhub.webhooks.destinations import CallbackAddresses


def order(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "orderNo": "SO-1001",
        "amount": 10_000,
        "currency": "CNY",
        "channel": "WECHATPAY",
        "description": "两件T恤",
        "splits": [
            {"merchantId": "mch_a", "amount": 6_000},
            {"merchantId": "mch_b", "amount": 3_000},
        ],
        "platformFee": 1_000,
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not ...}


def raw(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


def refused(body: Any) -> str:
    with pytest.raises(InvalidOrder) as caught:
        parse_order_request(body if isinstance(body, bytes) else raw(body))
    return str(caught.value)


def test_a_good_order_parses_and_its_fingerprint_ignores_key_order_and_rmb() -> None:
    parsed = parse_order_request(raw(order(notifyUrl="https://erp.example/orders")))
    assert parsed.channel is Channel.WECHATPAY
    assert parsed.merchant_ids() == ["mch_a", "mch_b"]
    reordered = dict(reversed(list(order(notifyUrl="https://erp.example/orders").items())))
    assert parse_order_request(raw(reordered)).fingerprint() == parsed.fingerprint()
    as_rmb = parse_order_request(raw(order(currency="RMB", notifyUrl="https://erp.example/orders")))
    assert as_rmb.currency == "CNY" and as_rmb.fingerprint() == parsed.fingerprint()
    assert parse_order_request(raw(order(amount=10_001, platformFee=1_001))).fingerprint() != (
        parse_order_request(raw(order())).fingerprint()
    )


def test_splits_that_do_not_add_up_are_refused_by_the_rule_not_as_a_field() -> None:
    with pytest.raises(SplitMismatch, match="must add up to the order's amount"):
        parse_order_request(raw(order(platformFee=999)))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (order(orderNo=""), "orderNo: must be 1 to 64"),
        (order(orderNo="x" * 65), "orderNo: must be 1 to 64"),
        (order(orderNo="a b"), "orderNo: must be 1 to 64"),
        (order(amount=0), "amount: must be a positive integer"),
        (order(amount=1.0), "amount: must be a positive integer"),
        (order(amount="10000"), "amount: must be a positive integer"),
        (order(amount=True), "amount: must be a positive integer"),
        (order(amount=10**16), "amount: must be a positive integer"),
        (order(currency="USD"), "currency: must be CNY"),
        (order(currency="cny"), "currency: must be CNY"),
        (order(channel="UNIONPAY"), "channel: must be WECHATPAY or ALIPAY"),
        (order(channel=1), "channel: must be WECHATPAY or ALIPAY"),
        (order(channel="wechatpay"), "channel: must be WECHATPAY or ALIPAY"),
        (order(description=" "), "description: must be 1 to 127"),
        (order(description="x" * 128), "description: must be 1 to 127"),
        (order(description="a\x07b"), "description: must be 1 to 127"),
        (order(splits=[]), "splits: must be a list of 1 to 50"),
        (
            order(splits=[{"merchantId": "m", "amount": 1}] * 51),
            "splits: must be a list of 1 to 50",
        ),
        (
            order(splits=[{"merchantId": "mch_a", "amount": 0}]),
            "splits[0].amount: must be a positive",
        ),
        (
            order(splits=[{"merchantId": "mch a", "amount": 1}]),
            "splits[0].merchantId: must be 1 to 64",
        ),
        (order(splits=[{"amount": 1}]), "splits[0].merchantId: required"),
        (order(splits=[{"merchantId": "m", "amount": 1, "x": 1}]), "splits[0].x: not allowed"),
        (
            order(
                splits=[{"merchantId": "m", "amount": 5_000}, {"merchantId": "m", "amount": 4_000}]
            ),
            "splits[1].merchantId: names a receiver twice",
        ),
        (order(platformFee=-1), "platformFee: must be a non-negative integer"),
        (order(platformFee=...), "platformFee: required"),
        (order(extra=1), "extra: not allowed"),
        (order(notifyUrl="ftp://erp.example/x"), "notifyUrl: must be an http(s) URL"),
        (order(notifyUrl="https://user:pw@erp.example/x"), "notifyUrl: must be an http(s) URL"),
        (order(notifyUrl="https://127.0.0.1/x"), "notifyUrl: must not point to a loopback"),
        (order(notifyUrl="http://0x7f000001/x"), "notifyUrl: must not point to a loopback"),
        (order(notifyUrl="http://localhost:8080/x"), "notifyUrl: must not point to a loopback"),
        (
            order(notifyUrl="http://169.254.169.254/latest"),
            "notifyUrl: must not point to a loopback",
        ),
        ([order()], "body: not a JSON object"),
    ],
)
def test_each_refusal_names_its_field(body: Any, message: str) -> None:
    assert refused(body).startswith(message), refused(body)


def test_malformed_bodies_are_refused_before_validation() -> None:
    assert refused(b'{"orderNo": "a", "orderNo": "b"}') == "body: duplicate key orderNo"
    assert refused(b"\xff") == "body: not UTF-8"
    assert refused(b'{"amount": NaN}').startswith("body:")
    assert refused(b"{" * 20 + b"}" * 20).startswith("body")
    assert (
        refused(raw(order(description="a\u0000b")))
        == "description: contains NUL or invalid Unicode"
    )


def test_an_operator_allowed_range_lets_a_notify_url_through() -> None:
    allowed = CallbackAddresses.allowing(["127.0.0.1/32"])
    parsed = parse_order_request(raw(order(notifyUrl="http://127.0.0.1:9000/cb")), allowed)
    assert parsed.notify_url == "http://127.0.0.1:9000/cb"


def test_refund_requests() -> None:
    plain = parse_refund_request(raw({"refundNo": "R-1", "amount": 500}))
    assert plain.splits is None and plain.platform_fee is None
    named = parse_refund_request(
        raw({"refundNo": "R-2", "amount": 500, "splits": [{"merchantId": "mch_a", "amount": 500}]})
    )
    assert named.splits is not None and named.splits[0].amount == 500
    with pytest.raises(InvalidOrder, match="platformFee: only with splits"):
        parse_refund_request(raw({"refundNo": "R-3", "amount": 5, "platformFee": 5}))
    with pytest.raises(InvalidOrder, match="amount: must be a positive"):
        parse_refund_request(raw({"refundNo": "R-4", "amount": 0}))
    with pytest.raises(InvalidOrder, match=r"splits\[1\].merchantId: names a receiver twice"):
        parse_refund_request(
            raw(
                {
                    "refundNo": "R-5",
                    "amount": 2,
                    "splits": [{"merchantId": "m", "amount": 1}, {"merchantId": "m", "amount": 1}],
                }
            )
        )
    with pytest.raises(InvalidOrder, match="reason: must be at most 80"):
        parse_refund_request(raw({"refundNo": "R-6", "amount": 1, "reason": "x" * 81}))


def test_ids_towards_the_channels() -> None:
    assert new_order_id(date(2026, 11, 30), 42) == "ORD202611300000000042"
    assert new_refund_id(date(2026, 11, 30), 7) == "RFD202611300000000007"
    assert len(new_order_id(date(2026, 11, 30), 10**10 - 1)) <= 32  # WeChat's out_trade_no
    with pytest.raises(ValueError):
        new_order_id(date(2026, 11, 30), 10**10)
