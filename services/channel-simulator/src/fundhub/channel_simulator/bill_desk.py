"""Where the simulated channels keep the bills they issue and hand them out.

A merchant's bill of a day is issued once: at its first request after 10:00 (GMT+8) the next
day, as both channels publish theirs, or earlier when a test or a demo releases the day
(``release``, which may also inject discrepancies). Once issued it does not change (the same
bytes, the same hash) until the day is released again: a corrected bill. A download is a
short-lived token (30 seconds, as Alipay's URLs; WeChat Pay's are as short) bound to the
merchant that asked.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from fundhub.channel_simulator.bills import (
    DEFAULT_FEE_PPM,
    BillRow,
    Discrepancy,
    day_bounds,
    day_rows,
    inject,
)
from fundhub.channel_simulator.trades import Book
from fundhub.channels.events import Channel
from fundhub.common.clock import BANK_TZ

READY_AT = time(10, 0)  # the next day, GMT+8
DOWNLOAD_TTL = timedelta(seconds=30)
_MAX_DOWNLOADS = 1_000


def ready_at(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), READY_AT, BANK_TZ)


@dataclass(frozen=True, slots=True)
class Download:
    channel: Channel
    merchant_ref: str
    name: str
    content: bytes
    expires_at: datetime


class BillDesk:
    def __init__(self, book: Book) -> None:
        self._book = book
        self._issued: dict[tuple[Channel, str, date], list[BillRow]] = {}
        self._files: dict[tuple[Channel, str, date, str], bytes] = {}
        self._downloads: dict[str, Download] = {}

    def release(
        self,
        channel: Channel,
        day: date,
        merchants: dict[str, str],
        discrepancies: Sequence[Discrepancy] = (),
        target: str | None = None,
        fee_ppm: int = DEFAULT_FEE_PPM,
    ) -> dict[str, int]:
        """Issue the day's bill of each merchant (``merchants``: merchant_ref -> app_id) now,
        from the book as it stands, the discrepancies applied to ``target``'s (needed when
        more than one merchant is served). Lines per merchant; ValueError when a discrepancy
        cannot be applied, and then nothing is issued."""
        if discrepancies and target is None:
            if len(merchants) != 1:
                raise ValueError("merchantRef: which merchant's bill the discrepancies go to")
            target = next(iter(merchants))
        if target is not None and target not in merchants:
            raise ValueError(f"merchantRef: no merchant {target} served")
        issued: dict[tuple[Channel, str, date], list[BillRow]] = {}
        trades = self._book.trades(channel)
        for merchant_ref, app_id in merchants.items():
            rows = day_rows(trades, merchant_ref, day, fee_ppm)
            if merchant_ref == target:
                rows = inject(rows, discrepancies, channel, day, app_id, merchant_ref)
            issued[(channel, merchant_ref, day)] = rows
        self._issued.update(issued)
        self._files = {k: v for k, v in self._files.items() if k[:3] not in issued}
        return {key[1]: len(rows) for key, rows in issued.items()}

    def rows(
        self, channel: Channel, merchant_ref: str, day: date, now: datetime
    ) -> list[BillRow] | None:
        """The issued bill's lines, issuing it when its time has come; None before."""
        key = (channel, merchant_ref, day)
        rows = self._issued.get(key)
        if rows is None:
            if now < ready_at(day):
                return None
            rows = self._issued[key] = day_rows(self._book.trades(channel), merchant_ref, day)
        return rows

    def file(
        self,
        channel: Channel,
        merchant_ref: str,
        day: date,
        variant: str,
        now: datetime,
        render: Callable[[list[BillRow]], bytes],
    ) -> bytes | None:
        """The issued bill as a file (``variant``: its type and packing), written once: asked
        again, the same bytes (an export time or a zip's dates would otherwise change them)."""
        rows = self.rows(channel, merchant_ref, day, now)
        if rows is None:
            return None
        key = (channel, merchant_ref, day, variant)
        made = self._files.get(key)
        if made is None:
            made = self._files[key] = render(rows)
        return made

    def offer(
        self, channel: Channel, merchant_ref: str, name: str, content: bytes, now: datetime
    ) -> str:
        """A download token for ``content``."""
        self._downloads = {t: d for t, d in self._downloads.items() if d.expires_at > now}
        while len(self._downloads) >= _MAX_DOWNLOADS:
            self._downloads.pop(next(iter(self._downloads)))
        token = secrets.token_urlsafe(24)
        self._downloads[token] = Download(channel, merchant_ref, name, content, now + DOWNLOAD_TTL)
        return token

    def take(self, token: str, now: datetime) -> Download | None:
        download = self._downloads.get(token)
        if download is None or download.expires_at <= now:
            return None
        return download


def parse_day(text: str, now: datetime) -> date:
    """A bill date as both channels take it (``yyyy-MM-dd``), not in the future and at most
    three months back (WeChat Pay's limit)."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise ValueError("bill_date: yyyy-MM-dd") from None
    if len(text) != len("yyyy-MM-dd"):
        raise ValueError("bill_date: yyyy-MM-dd")
    today = now.astimezone(BANK_TZ).date()
    if not today - timedelta(days=92) <= day <= today:
        raise ValueError("bill_date: within the last three months, not ahead")
    return day


def is_over(day: date, now: datetime) -> bool:
    return now >= day_bounds(day)[1]
