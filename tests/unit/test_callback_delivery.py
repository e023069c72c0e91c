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
