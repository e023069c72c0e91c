"""The business day a statement reports, and the margin around its midnight. Pure.

Channels and the depository count days in China's time (GMT+8, no daylight saving time). Two
clocks never agree to the millisecond: a payment the platform recorded at 23:59:59.8 may be on
the channel's next-day bill. An unmatched item that close to the day's end is handed to the next
day's run, which sees the other side, rather than reported missing twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from fundhub.common.clock import BANK_TZ

DEFAULT_CARRY_WINDOW = timedelta(minutes=5)
MAX_CARRY_WINDOW = timedelta(hours=2)


@dataclass(frozen=True, slots=True)
class DayWindow:
    day: date
    start: datetime  # 00:00 GMT+8, aware
    end: datetime  # the next day's 00:00 GMT+8
    carry_from: datetime  # unmatched items at or after this go to the next day's run

    @property
    def next_day(self) -> date:
        return self.day + timedelta(days=1)


def day_window(day: date, carry_window: timedelta = DEFAULT_CARRY_WINDOW) -> DayWindow:
    if not timedelta(0) <= carry_window <= MAX_CARRY_WINDOW:
        raise ValueError(f"carry window must be between 0 and {MAX_CARRY_WINDOW}")
    start = datetime.combine(day, time(0), tzinfo=BANK_TZ)
    end = start + timedelta(days=1)
    return DayWindow(day=day, start=start, end=end, carry_from=end - carry_window)


def business_day_of(moment: datetime) -> date:
    if moment.tzinfo is None:
        raise ValueError("a naive time has no business day")
    return moment.astimezone(BANK_TZ).date()
