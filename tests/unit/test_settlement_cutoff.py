"""T+1 at a cut-off in GMT+8: when an order settles by default, and what is due at a moment."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from fundhub.common.clock import BANK_TZ
from fundhub.settlement.cutoff import (
    InvalidCutoff,
    business_day,
    due_at,
    paid_before,
    parse_cutoff,
)

TWO = parse_cutoff("02:00")


def local(text: str) -> datetime:
    """A GMT+8 wall-clock time, ``YYYY-MM-DD HH:MM[:SS]``."""
    fmt = "%Y-%m-%d %H:%M:%S" if text.count(":") == 2 else "%Y-%m-%d %H:%M"
    return datetime.strptime(text, fmt).replace(tzinfo=BANK_TZ)


@pytest.mark.parametrize(
    ("paid", "due"),
    [
        ("2026-03-01 00:00", "2026-03-02 02:00"),  # the first instant of D
        ("2026-03-01 01:59", "2026-03-02 02:00"),  # before D's own cut-off: still D+1
        ("2026-03-01 02:00", "2026-03-02 02:00"),
        ("2026-03-01 23:59:59", "2026-03-02 02:00"),  # the last second of D
        ("2026-03-02 00:00", "2026-03-03 02:00"),  # midnight starts the next day
        ("2026-02-28 12:00", "2026-03-01 02:00"),  # month end
        ("2028-02-28 12:00", "2028-02-29 02:00"),  # leap day
        ("2026-12-31 23:30", "2027-01-01 02:00"),  # year end
    ],
)
def test_an_order_paid_on_day_d_settles_at_the_first_cutoff_of_d_plus_1(
    paid: str, due: str
) -> None:
    assert due_at(local(paid), TWO) == local(due)
    assert due_at(local(paid), TWO).tzinfo is UTC


def test_the_day_is_read_in_gmt8_not_utc() -> None:
    # 2026-03-01 17:30 UTC is 2026-03-02 01:30 in GMT+8: paid on the 2nd, due on the 3rd.
    paid = datetime(2026, 3, 1, 17, 30, tzinfo=UTC)
    assert business_day(paid).isoformat() == "2026-03-02"
    assert due_at(paid, TWO) == local("2026-03-03 02:00")
    # And 15:59 UTC is 23:59 on the 1st: due on the 2nd.
    assert due_at(datetime(2026, 3, 1, 15, 59, tzinfo=UTC), TWO) == local("2026-03-02 02:00")


def test_gmt8_has_no_daylight_saving_time() -> None:
    # Europe's and America's DST changes leave GMT+8 alone: every due time is at 02:00 local,
    # 18:00 UTC the day before, all year round.
    day = local("2026-01-01 12:00")
    for _ in range(366):
        due = due_at(day, TWO)
        assert due.astimezone(BANK_TZ).hour == 2 and due.hour == 18
        day += timedelta(days=1)


@pytest.mark.parametrize(
    ("now", "boundary"),
    [
        ("2026-03-02 01:59:59", "2026-03-01 00:00"),  # the 2nd's cut-off not passed: up to D-2
        ("2026-03-02 02:00", "2026-03-02 00:00"),  # passed: everything paid on the 1st
        ("2026-03-02 23:59", "2026-03-02 00:00"),
        ("2026-03-03 00:00", "2026-03-02 00:00"),  # midnight changes nothing until 02:00
        ("2026-03-03 02:00", "2026-03-03 00:00"),
    ],
)
def test_what_is_due_now_is_what_was_paid_before_a_boundary(now: str, boundary: str) -> None:
    assert paid_before(local(now), TWO) == local(boundary)


@pytest.mark.parametrize("cutoff", ["00:00", "02:00", "09:30", "23:59"])
def test_due_by_now_exactly_when_paid_before_the_boundary(cutoff: str) -> None:
    """The scheduler's query (paid_at < boundary) selects exactly the orders due_at says."""
    cut = parse_cutoff(cutoff)
    rng = random.Random(cutoff)
    start = local("2026-03-01 00:00")
    for _ in range(5000):
        paid = start + timedelta(seconds=rng.randrange(0, 4 * 86400))
        now = paid + timedelta(seconds=rng.randrange(-86400, 3 * 86400))
        assert (due_at(paid, cut) <= now) == (paid < paid_before(now, cut)), (paid, now)
    # And exactly at the edges: one second before the due time, and the due time itself.
    for paid in (local("2026-03-01 00:00"), local("2026-03-01 23:59:59")):
        due = due_at(paid, cut)
        assert paid >= paid_before(due - timedelta(seconds=1), cut)
        assert paid < paid_before(due, cut)


def test_a_midnight_cutoff_settles_at_the_start_of_the_next_day() -> None:
    cut = parse_cutoff("00:00")
    assert due_at(local("2026-03-01 23:59:59"), cut) == local("2026-03-02 00:00")
    assert due_at(local("2026-03-01 00:00"), cut) == local("2026-03-02 00:00")


@pytest.mark.parametrize("text", ["2:00", "24:00", "02:60", "0200", "02:00:00", "", "ab:cd"])
def test_a_cutoff_must_be_hh_mm(text: str) -> None:
    with pytest.raises(InvalidCutoff):
        parse_cutoff(text)


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError):
        due_at(datetime(2026, 3, 1, 12, 0), TWO)
