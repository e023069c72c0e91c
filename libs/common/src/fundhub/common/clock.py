"""Time: UTC inside; the bank's ``yyyy-MM-dd HH:mm:ss`` in GMT+8 only at the edge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

BANK_TZ = timezone(timedelta(hours=8), "GMT+8")
BANK_FORMAT = "%Y-%m-%d %H:%M:%S"


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso_utc(moment: datetime) -> str:
    """ISO 8601 with a ``Z``, second precision, as the wire conventions ask."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_utc_ms(moment: datetime) -> str:
    millis = f"{moment.microsecond // 1000:03d}"
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + millis + "Z"


def parse_bank_time(text: str) -> datetime:
    """Parse the bank's GMT+8 timestamp; raises ValueError on any other shape."""
    if len(text) != 19:
        raise ValueError("expected yyyy-MM-dd HH:mm:ss")
    return datetime.strptime(text, BANK_FORMAT).replace(tzinfo=BANK_TZ)


def format_bank_time(moment: datetime) -> str:
    return moment.astimezone(BANK_TZ).strftime(BANK_FORMAT)
