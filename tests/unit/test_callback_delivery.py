"""The callback retry policy and signature headers, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fundhub.client import verify_callback
from fundhub.webhooks.policy import (
    Delivered,
    GiveUp,
    RetryAt,
    RetryPolicy,
    decide,
    signed_headers,
)

POLICY = RetryPolicy(base_s=1.0, max_s=3600.0, max_age_s=86400.0)
CREATED = datetime(2025, 1, 1, tzinfo=UTC)


def test_backoff_doubles_then_caps() -> None:
    assert [POLICY.nominal_delay_s(n) for n in range(4)] == [1.0, 2.0, 4.0, 8.0]
    assert POLICY.nominal_delay_s(12) == 3600.0
    assert POLICY.nominal_delay_s(10_000) == 3600.0  # no overflow on a huge count


def test_2xx_delivers_anything_else_retries_with_jitter_inside_bounds() -> None:
    now = CREATED + timedelta(minutes=1)
    assert decide(204, 0, CREATED, now, POLICY) == Delivered(now)
    low = decide(500, 3, CREATED, now, POLICY, jitter=lambda: 0.0)
    high = decide(None, 3, CREATED, now, POLICY, jitter=lambda: 0.999999)
    assert low == RetryAt(now + timedelta(seconds=6.0))
    assert isinstance(high, RetryAt)
    assert now + timedelta(seconds=7.99) < high.at <= now + timedelta(seconds=8.0)
    assert isinstance(decide(302, 0, CREATED, now, POLICY), RetryAt)


def test_gives_up_only_past_the_age_limit() -> None:
    just_before = CREATED + timedelta(seconds=86399)
    at_limit = CREATED + timedelta(seconds=86400)
    assert isinstance(decide(500, 20, CREATED, just_before, POLICY), RetryAt)
    assert decide(500, 20, CREATED, at_limit, POLICY) == GiveUp(at_limit)
    assert decide(200, 20, CREATED, at_limit, POLICY) == Delivered(at_limit)


def test_signed_headers_verify_with_the_client_library() -> None:
    body = b'{"payId":"P1","state":"SUCCESS"}'
    headers = signed_headers("whsec", body, 1_700_000_000)
    assert headers["Content-Type"] == "application/json"
    parsed = verify_callback(
        "whsec",
        headers["X-Fundhub-Timestamp"],
        headers["X-Fundhub-Signature"],
        body,
        now=1_700_000_010,
    )
    assert parsed == {"payId": "P1", "state": "SUCCESS"}


def _envelope(type_: str, **data: object) -> bytes:
    from fundhub.common.envelope import Envelope

    return Envelope(type=type_, correlation_id="c", data=dict(data)).to_bytes()


def test_payout_and_merchant_callbacks_become_the_same_kind_of_delivery() -> None:
    import pytest

    from fundhub.common.consumer import PoisonMessage
    from fundhub.webhooks.intake import decode_callback

    payout = decode_callback(
        _envelope(
            "payout.callback", payId="PAY1", state="SUCCESS", url="https://a.example/", keyId="k",
            body={"payId": "PAY1"},
        )
    )  # fmt: skip
    assert (payout.pay_id, payout.state) == ("PAY1", "SUCCESS")
    merchant = decode_callback(
        _envelope(
            "merchant.callback", subjectId="mch_1", state="ACTIVE:1", url="https://a.example/",
            keyId="k", body={"event": "MERCHANT_APPROVED"},
        )
    )  # fmt: skip
    assert (merchant.pay_id, merchant.state, merchant.key_id) == ("mch_1", "ACTIVE:1", "k")
    assert merchant.body == b'{"event":"MERCHANT_APPROVED"}'
    with pytest.raises(PoisonMessage, match="state"):
        decode_callback(
            _envelope("merchant.callback", subjectId="mch_1", url="u", keyId="k", body={})
        )
    order = decode_callback(
        _envelope(
            "order.callback", subjectId="RFD1", state="SUCCESS", url="https://a.example/",
            keyId="k", body={"refundId": "RFD1"},
        )
    )  # fmt: skip
    assert (order.pay_id, order.state) == ("RFD1", "SUCCESS")
    with pytest.raises(PoisonMessage, match="unexpected message type"):
        decode_callback(_envelope("nonsense.callback", body={}))
