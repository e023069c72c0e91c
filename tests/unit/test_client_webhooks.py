"""Callback verification: HMAC-SHA256 over timestamp + "." + body, freshness, the JSON object."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from fundhub.client import (
    FundhubClient,
    Payout,
    SignatureMismatch,
    StaleCallback,
    UnexpectedPayload,
    verify_callback,
)
from fundhub.common.signing import webhook_signature

SECRET = "whsec-unit-tests-0123456789"
NOW = 1_795_939_200
BODY = json.dumps(
    {
        "statusCode": 200,
        "bizCode": "SUCCESS",
        "payId": "PAY202511210000000001",
        "requestId": "req-1",
        "timestamp": "2025-11-21T08:00:00Z",
        "supplierId": "SUP10001",
        "amount": 1000,
        "currency": "CNY",
        "extension": {"bankTxnId": "B1"},
    }
).encode()


def sign(body: bytes = BODY, ts: int = NOW, secret: str = SECRET) -> tuple[str, str]:
    return str(ts), webhook_signature(secret, str(ts), body)


def test_a_genuine_callback_returns_its_payout() -> None:
    ts, sig = sign()
    data = verify_callback(SECRET, ts, sig, BODY, now=NOW + 10)
    payout = Payout.from_wire(data)
    assert (payout.pay_id, payout.biz_code, payout.amount) == (
        "PAY202511210000000001",
        "SUCCESS",
        1000,
    )
    assert payout.is_final


def test_the_signature_binds_timestamp_and_body() -> None:
    ts, sig = sign()
    with pytest.raises(SignatureMismatch):
        verify_callback(SECRET, str(NOW + 1), sig, BODY, now=NOW)
    with pytest.raises(SignatureMismatch):
        verify_callback(SECRET, ts, sig, BODY.replace(b"1000", b"9000"), now=NOW)
    with pytest.raises(SignatureMismatch):
        verify_callback("another-secret", ts, sig, BODY, now=NOW)


@pytest.mark.parametrize(
    ("ts", "sig"),
    [
        (None, "ab"),
        (str(NOW), None),
        ("", "ab"),
        (str(NOW), ""),
        ("-1", "ab"),
        ("1e9", "ab"),
        ("١٢٣", "ab"),
    ],
)
def test_missing_or_malformed_headers(ts: str | None, sig: str | None) -> None:
    with pytest.raises(SignatureMismatch):
        verify_callback(SECRET, ts, sig, BODY, now=NOW)


@pytest.mark.parametrize("offset", [301, -301, 86_400])
def test_stale_or_future_timestamps_are_refused(offset: int) -> None:
    ts, sig = sign(ts=NOW + offset)
    with pytest.raises(StaleCallback):
        verify_callback(SECRET, ts, sig, BODY, now=NOW)
    assert verify_callback(SECRET, ts, sig, BODY, tolerance_s=abs(offset), now=NOW)


def test_within_tolerance_on_both_sides() -> None:
    for offset in (-300, 0, 300):
        ts, sig = sign(ts=NOW + offset)
        assert verify_callback(SECRET, ts, sig, BODY, now=NOW)["payId"]


def test_rotated_secrets() -> None:
    ts, sig = sign(secret="old-secret")
    assert verify_callback(["new-secret", "old-secret"], ts, sig, BODY, now=NOW)
    with pytest.raises(SignatureMismatch):
        verify_callback(["new-secret"], ts, sig, BODY, now=NOW)
    with pytest.raises(ValueError):
        verify_callback([], ts, sig, BODY, now=NOW)


@pytest.mark.parametrize("body", [b"not json", b"[1,2]", b"\xff\xfe"])
def test_authentic_but_not_an_object(body: bytes) -> None:
    ts, sig = sign(body=body)
    with pytest.raises(UnexpectedPayload):
        verify_callback(SECRET, ts, sig, body, now=NOW)


def test_uses_the_clock_when_now_is_not_given() -> None:
    ts, sig = sign(ts=int(time.time()))
    assert verify_callback(SECRET, ts, sig, BODY)["payId"]
    ts, sig = sign(ts=int(time.time()) - 3600)
    with pytest.raises(StaleCallback):
        verify_callback(SECRET, ts, sig, BODY)


def test_client_method_uses_its_webhook_secret() -> None:
    api = FundhubClient(
        "http://gateway.test",
        "ak_1",
        "api-secret",
        webhook_secret=SECRET,
        transport=httpx.MockTransport(lambda r: httpx.Response(500)),
    )
    now = int(time.time())
    ts, sig = sign(ts=now)
    with api:
        assert api.verify_callback(ts, sig, BODY)["requestId"] == "req-1"
        with pytest.raises(SignatureMismatch):
            # The API secret is not the webhook secret: they are kept apart.
            api.verify_callback(ts, sign(ts=now, secret="api-secret")[1], BODY)
