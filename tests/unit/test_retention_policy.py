"""The inbox's dedupe window outlasts every peer that sends a message again, and cannot be set
below two days by mistake."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fundhub.common.config import Settings
from fundhub.common.retention import policy_of

HOUR_S = 3600.0
# How long each peer may send the same message again (seed and channel documentation).
PEER_RETRIES_S = {
    "bank": 3 * 3 * 60.0,
    "wechatpay": 24 * HOUR_S,
    "alipay": 25 * HOUR_S,
}
KAFKA_DEFAULT_RETENTION_S = 168 * HOUR_S  # log.retention.hours: what an offset reset replays


def test_the_default_window_outlasts_every_peer_and_kafkas_default_retention() -> None:
    settings = Settings()
    policy = policy_of(settings)
    assert policy.inbox_window_s == 7 * 24 * HOUR_S
    assert policy.inbox_window_s > max(PEER_RETRIES_S.values())
    assert policy.inbox_window_s >= KAFKA_DEFAULT_RETENTION_S
    assert policy.outbox_keep_s == HOUR_S
    assert policy.interval_s == settings.retention_interval_s


def test_a_window_shorter_than_two_days_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(inbox_dedupe_window_s=25 * HOUR_S)
    assert Settings(inbox_dedupe_window_s=2 * 24 * HOUR_S).inbox_dedupe_window_s == 172800
