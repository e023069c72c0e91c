from datetime import UTC, datetime, timedelta, timezone

import pytest

from fundhub.common.clock import (
    BANK_FORMAT,
    BANK_TZ,
    ISO_UTC_US_FORMAT,
    format_bank_time,
    iso_utc_ms,
    iso_utc_us,
    iso_utc_us_now,
    parse_bank_time,
)


@pytest.mark.parametrize(
    "text", ["2019-11-21 16:19:13", "2024-02-29 00:00:00", "1999-12-31 23:59:59"]
)
def test_bank_time_parses_as_strptime_would(text: str) -> None:
    expected = datetime.strptime(text, BANK_FORMAT).replace(tzinfo=BANK_TZ)
    assert parse_bank_time(text) == expected
    assert parse_bank_time(text).utcoffset() == timedelta(hours=8)
    assert format_bank_time(parse_bank_time(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2019-11-21",
        "2019-11-21T16:19:13",
        "2019-11-21 16:19:13+08:00",
        "2019-1-21 16:19:130",
        "2019-11-21 16:19:1 ",
        " 2019-11-21 16:19:1",
        "2023-02-29 00:00:00",
        "2019-13-01 00:00:00",
        "2019-11-21 24:00:00",
        "2019-11-21 16:60:00",
        "２０１９-11-21 16:19:13",
        "2019-11-21 16:19:13\n",
    ],
)
def test_other_shapes_and_impossible_dates_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_bank_time(text)


def test_iso_utc_ms_is_utc_with_milliseconds_and_z() -> None:
    moment = datetime(2026, 11, 21, 7, 8, 9, 123999, tzinfo=timezone(timedelta(hours=8)))
    assert iso_utc_ms(moment) == "2026-11-20T23:08:09.123Z"
    assert iso_utc_ms(datetime(2026, 1, 1, tzinfo=UTC)) == "2026-01-01T00:00:00.000Z"


def test_iso_utc_us_writes_what_strftime_writes_of_the_instant() -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    instants = [
        0,
        1_764_522_826_000_000_000,  # a whole second: six zeros, not dropped
        1_764_522_826_000_000_999,  # nanoseconds are cut, not rounded
        1_764_522_826_999_999_999,
        1_764_522_827_000_000_001,  # the next second, then back: the cached second follows
        1_764_522_826_123_456_789,
        951_782_400_000_001_000,  # 2000-02-29
        4_102_444_799_999_999_000,  # 2099-12-31T23:59:59.999999
    ]
    for ns in instants:
        moment = epoch + timedelta(microseconds=ns // 1000)
        assert iso_utc_us(ns) == moment.strftime(ISO_UTC_US_FORMAT), ns


def test_iso_utc_us_now_is_now() -> None:
    before = datetime.now(UTC)
    stamp = iso_utc_us_now()
    after = datetime.now(UTC)
    moment = datetime.strptime(stamp, ISO_UTC_US_FORMAT).replace(tzinfo=UTC)
    assert before <= moment <= after
