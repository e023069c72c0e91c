from datetime import UTC, datetime, timedelta, timezone

import pytest

from fundhub.common.clock import (
    BANK_FORMAT,
    BANK_TZ,
    format_bank_time,
    iso_utc_ms,
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
