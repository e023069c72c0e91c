"""When the reconciler fetches the statements, and which day. Pure.

The channels and the bank publish a day's files the next morning (China time): the reconciler
fetches day D at a configured time of D+1 (``FUNDHUB_RECON_FETCH_AT``, HH:MM in GMT+8). A
source not ready yet is asked again a little later, a few times, then left for the operator.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta

from fundhub.common.clock import BANK_TZ

_HHMM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
RETRY_AFTER = timedelta(minutes=15)
MAX_TRIES = 8


def parse_fetch_at(text: str) -> time:
    match = _HHMM.fullmatch(text.strip())
    if match is None:
        raise ValueError("fetch time: HH:MM on a 24-hour clock (GMT+8)")
    return time(int(match.group(1)), int(match.group(2)), tzinfo=BANK_TZ)


def fetch_moment(day: date, at: time) -> datetime:
    """When day ``day``'s files are fetched: ``at`` on the next day, GMT+8."""
    return datetime.combine(day + timedelta(days=1), at.replace(tzinfo=None), tzinfo=BANK_TZ)


def due_day(now: datetime, at: time) -> date:
    """The latest day whose fetch moment is at or before ``now``."""
    if now.tzinfo is None:
        raise ValueError("naive time")
    today = now.astimezone(BANK_TZ).date()
    yesterday = today - timedelta(days=1)
    return yesterday if now >= fetch_moment(yesterday, at) else yesterday - timedelta(days=1)


def next_fetch(now: datetime, at: time) -> tuple[datetime, date]:
    """The next fetch moment strictly after ``now`` and the day it fetches."""
    day = due_day(now, at) + timedelta(days=1)
    return fetch_moment(day, at), day
