"""When an order is due to settle by default: T+1 at a cut-off, in GMT+8. Pure.

The depository's business day is China's (GMT+8, no daylight saving time), so an order paid on
day D (read in GMT+8) settles at the first cut-off of D+1: with the cut-off at 02:00, an order
paid at 23:59 on the 1st and one paid at 00:00 on the 1st both settle at 02:00 on the 2nd, and
one paid at 00:00 on the 2nd settles at 02:00 on the 3rd.

The due time is a non-decreasing function of the payment time, so "due by now" is "paid before
a boundary" (``paid_before``): the scheduler reads the orders paid before it through an index
on the payment time, never scanning those not due yet.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

from fundhub.common.clock import BANK_TZ

DEFAULT_CUTOFF = "02:00"
_CUTOFF = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


class InvalidCutoff(ValueError):
    """A cut-off that is not ``HH:MM`` (00:00 to 23:59)."""


def parse_cutoff(text: str) -> time:
    """``HH:MM`` on a 24-hour clock, in GMT+8."""
    match = _CUTOFF.fullmatch(text.strip())
    if match is None:
        raise InvalidCutoff(f"cut-off {text!r}: expected HH:MM, 00:00 to 23:59")
    return time(int(match.group(1)), int(match.group(2)), tzinfo=BANK_TZ)


def business_day(moment: datetime) -> date:
    """The depository's day of ``moment`` (an aware datetime)."""
    if moment.tzinfo is None:
        raise ValueError("an aware datetime is required")
    return moment.astimezone(BANK_TZ).date()


def _at(day: date, cutoff: time) -> datetime:
    return datetime.combine(day, cutoff.replace(tzinfo=None), tzinfo=BANK_TZ).astimezone(UTC)


def due_at(paid_at: datetime, cutoff: time) -> datetime:
    """When an order paid at ``paid_at`` settles by default (UTC): the cut-off of D+1."""
    return _at(business_day(paid_at) + timedelta(days=1), cutoff)


def paid_before(now: datetime, cutoff: time) -> datetime:
    """The boundary of what is due at ``now`` (UTC): exactly the orders paid before it.

    The last cut-off passed is that of day L (today if its cut-off has passed, else yesterday);
    every order paid on L-1 or earlier is due, so the boundary is midnight starting L, GMT+8.
    ``due_at(p) <= now`` holds exactly when ``p < paid_before(now)``.
    """
    today = business_day(now)
    last = today if now >= _at(today, cutoff) else today - timedelta(days=1)
    return datetime.combine(last, time(0, 0), tzinfo=BANK_TZ).astimezone(UTC)
