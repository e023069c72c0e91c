"""What to do after one callback attempt: the retry policy and the signed request, no I/O."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from fundhub.common.config import Settings
from fundhub.common.signing import webhook_signature

HEADER_TIMESTAMP = "X-Fundhub-Timestamp"
HEADER_SIGNATURE = "X-Fundhub-Signature"
# The delay actually used is in [JITTER_FLOOR * nominal, nominal]: replicas retrying the same
# failing client spread out, and a retry never comes sooner than the floor promises.
JITTER_FLOOR = 0.75


@dataclass(frozen=True)
class RetryPolicy:
    base_s: float
    max_s: float
    max_age_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            settings.callback_backoff_base_s,
            settings.callback_backoff_max_s,
            settings.callback_max_age_s,
        )

    def nominal_delay_s(self, failures_before: int) -> float:
        """``base * 2^n`` capped at ``max``; ``n`` is the attempts already made before this one."""
        exponent = min(failures_before, 62)  # far past any cap; 2.0**1024 would overflow
        return float(min(self.base_s * (2.0**exponent), self.max_s))


@dataclass(frozen=True)
class Delivered:
    at: datetime


@dataclass(frozen=True)
class RetryAt:
    at: datetime


@dataclass(frozen=True)
class GiveUp:
    at: datetime


Outcome = Delivered | RetryAt | GiveUp


def is_success(status_code: int | None) -> bool:
    return status_code is not None and 200 <= status_code < 300


def decide(
    status_code: int | None,
    attempts_before: int,
    created_at: datetime,
    now: datetime,
    policy: RetryPolicy,
    jitter: Callable[[], float] = random.random,
) -> Outcome:
    """A 2xx delivers; anything else retries later, or gives up once the delivery is too old.

    ``jitter`` returns a number in [0, 1); injectable so the policy can be tested exactly.
    """
    if is_success(status_code):
        return Delivered(now)
    if now >= created_at + timedelta(seconds=policy.max_age_s):
        return GiveUp(now)
    nominal = policy.nominal_delay_s(attempts_before)
    delay = nominal * (JITTER_FLOOR + (1.0 - JITTER_FLOOR) * jitter())
    return RetryAt(now + timedelta(seconds=delay))


def signed_headers(webhook_secret: str, body: bytes, unix_seconds: int) -> dict[str, str]:
    """The headers a client checks with ``fundhub.client.verify_callback``."""
    timestamp = str(unix_seconds)
    return {
        "Content-Type": "application/json",
        HEADER_TIMESTAMP: timestamp,
        HEADER_SIGNATURE: webhook_signature(webhook_secret, timestamp, body),
    }


# What a tenant may read about a failed attempt (GET /v1/payouts/{payId}/callbacks): a kind of
# failure, never the client library's text. That text (the resolved address, "connection
# refused" against "timed out" on a given port) would turn callbacks into a scanner of our
# network; operators find it in the logs.
ERROR_TIMED_OUT = "timed out"
ERROR_CONNECTION_FAILED = "connection failed"
ERROR_NOT_ALLOWED = "refused: address not allowed"
ERROR_INVALID_URL = "refused: invalid URL"
ERROR_NO_ANSWER = "no valid HTTP answer"
ERROR_NO_SECRET = "no usable webhook secret"
PUBLIC_ERRORS = frozenset(
    {
        ERROR_TIMED_OUT,
        ERROR_CONNECTION_FAILED,
        ERROR_NOT_ALLOWED,
        ERROR_INVALID_URL,
        ERROR_NO_ANSWER,
        ERROR_NO_SECRET,
    }
)
ERROR_OTHER = "failed"


def public_error(recorded: str | None) -> str | None:
    """A recorded attempt error as a tenant sees it; rows written before the errors were made
    generic (or by anything else) show only that the attempt failed."""
    if recorded is None or recorded in PUBLIC_ERRORS:
        return recorded
    return ERROR_OTHER
