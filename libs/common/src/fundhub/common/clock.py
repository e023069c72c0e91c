"""Time: UTC inside; the bank's ``yyyy-MM-dd HH:mm:ss`` in GMT+8 only at the edge."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta, timezone

BANK_TZ = timezone(timedelta(hours=8), "GMT+8")
BANK_FORMAT = "%Y-%m-%d %H:%M:%S"
_BANK_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2}) ([0-9]{2}):([0-9]{2}):([0-9]{2})")


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso_utc(moment: datetime) -> str:
    """ISO 8601 with a ``Z``, second precision, as the wire conventions ask."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_utc_ms(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


ISO_UTC_US_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_ISO_SECOND_FORMAT = "%Y-%m-%dT%H:%M:%S"
_stamp_second: tuple[int, str] = (-1, "")


def iso_utc_us(ns: int) -> str:
    """``2026-11-30T19:33:46.639273Z`` for a time in nanoseconds since the epoch: what
    ``strftime(ISO_UTC_US_FORMAT)`` makes of that instant in UTC (microseconds cut, not
    rounded). Without a datetime, and the date and time of day formatted once a second: this
    stamps every audit entry, and ``now().strftime`` was a tenth of an entry's cost."""
    global _stamp_second
    second, micro = divmod(ns // 1000, 1_000_000)
    cached, prefix = _stamp_second
    if second != cached:
        prefix = time.strftime(_ISO_SECOND_FORMAT, time.gmtime(second))
        _stamp_second = (second, prefix)
    return f"{prefix}.{micro:06d}Z"


def iso_utc_us_now() -> str:
    return iso_utc_us(time.time_ns())


def parse_bank_time(text: str) -> datetime:
    """Parse the bank's GMT+8 timestamp; raises ValueError on any other shape.

    A pattern and the constructor rather than ``strptime``, which was a tenth of the CPU the
    gateway spends on a notification; the constructor still refuses impossible dates."""
    match = _BANK_TIME.fullmatch(text)
    if match is None:
        raise ValueError("expected yyyy-MM-dd HH:mm:ss")
    year, month, day, hour, minute, second = map(int, match.groups())
    return datetime(year, month, day, hour, minute, second, tzinfo=BANK_TZ)


def format_bank_time(moment: datetime) -> str:
    return moment.astimezone(BANK_TZ).strftime(BANK_FORMAT)
