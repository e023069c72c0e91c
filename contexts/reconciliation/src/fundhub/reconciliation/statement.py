"""What every statement parser produces, whatever the source's format.

One shape for the WeChat Pay and Alipay trade bills and the depository bank's daily files, so the
loader (COPY) and the matching read one thing. Parsers are strict: a line that cannot be read
refuses the whole file with its name and line number (``StatementRejected``); nothing is ever
read as 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum


class Source(StrEnum):
    WECHATPAY = "wechatpay"
    ALIPAY = "alipay"
    BANK = "bank"


class LineKind(StrEnum):
    """What a line records. Channels: a payment or a refund. The bank: money into or out of a
    sub-account (a credit or a debit); its end-of-day balances are ``ClosingBalance``."""

    PAYMENT = "PAYMENT"
    REFUND = "REFUND"
    CREDIT = "CREDIT"
    DEBIT = "DEBIT"


@dataclass(slots=True)  # not frozen: a frozen class costs ~5 µs a line, seconds a file
class StatementLine:
    """One detail line, amounts in exact fen. Treated as read-only once parsed.

    ``reference`` is the platform's own id as the source echoes it: the order's
    ``orderNo`` (商户订单号) for a payment, the ``refundNo`` (商户退款单号,
    退款请求号) for a refund, the bank's business reference for a transfer, a
    payout's ``payId``. ``source_ref`` is the source's own id (微信订单号,
    支付宝交易号, the bank's serial). ``status`` is the source's word, kept as
    written (``SUCCESS``, ``REFUND``, 交易, 退款 …): the matching maps it.
    ``account`` and ``balance_fen`` are the bank's (the sub-account and the
    balance after the line); channels leave them None. ``business`` is the
    bank's business type (``TRANSFER_IN``, ``PAYOUT``, ``SPLIT_IN`` …: which of the
    platform's records the line is about); channels leave it None.
    """

    line_no: int
    kind: LineKind
    reference: str
    source_ref: str
    amount_fen: int
    fee_fen: int
    status: str
    occurred_at: datetime
    account: str | None = None
    balance_fen: int | None = None
    counterparty: str | None = None
    business: str | None = None


@dataclass(frozen=True, slots=True)
class ClosingBalance:
    """The bank's end-of-day balance of one sub-account."""

    line_no: int
    account: str
    balance_fen: int
    currency: str = "CNY"


@dataclass(frozen=True, slots=True)
class Totals:
    """The file's own summary (its trailer or summary section), checked against the details
    before anything is loaded."""

    count: int
    amount_fen: int
    refund_fen: int
    fee_fen: int


@dataclass(frozen=True, slots=True)
class Statement:
    source: Source
    day: date
    lines: tuple[StatementLine, ...]
    totals: Totals
    closing_balances: tuple[ClosingBalance, ...] = ()


class LineStream:
    """A statement as its parser reads it: ``lines`` yields each detail line as soon as it is
    read, and only once the last is taken are the file's own totals known (``ended``): a file
    refused at its summary has already given lines, so its reader must be able to undo them
    (the import is one transaction). Memory stays that of one line, whatever the file."""

    __slots__ = ("_lines", "closing_balances", "day", "file", "merchant", "source", "totals")

    def __init__(self, source: Source, day: date, file: str) -> None:
        self.source, self.day, self.file = source, day, file
        # Whose file it is (WeChat Pay's 商户号, Alipay's seller id, the bank's app id), set by
        # the parser once read: a day has a current file per source and merchant.
        self.merchant = ""
        self.totals: Totals | None = None
        self.closing_balances: tuple[ClosingBalance, ...] = ()
        self._lines: Iterator[StatementLine] = iter(())

    @classmethod
    def of(cls, statement: Statement, file: str) -> LineStream:
        """A statement read whole, as a stream (its totals known from the start)."""
        stream = cls(statement.source, statement.day, file)
        stream.feed(iter(statement.lines))
        stream.end(statement.totals, statement.closing_balances)
        return stream

    def feed(self, lines: Iterator[StatementLine]) -> None:
        self._lines = lines

    @property
    def lines(self) -> Iterator[StatementLine]:
        return self._lines

    def end(self, totals: Totals, closing_balances: tuple[ClosingBalance, ...] = ()) -> None:
        self.totals, self.closing_balances = totals, closing_balances

    def ended(self) -> Totals:
        if self.totals is None:
            raise StatementRejected(self.file, 0, "the file ended before its totals")
        return self.totals

    def whole(self) -> Statement:
        """Every line in memory: for small files and tests, not for a day of a million lines."""
        lines = tuple(self._lines)
        return Statement(self.source, self.day, lines, self.ended(), self.closing_balances)


class StatementRejected(ValueError):
    """The file is refused whole. ``line_no`` 0 means the file as such (truncated zip, wrong
    encoding, no summary)."""

    def __init__(self, file: str, line_no: int, reason: str) -> None:
        super().__init__(f"{file}:{line_no}: {reason}" if line_no else f"{file}: {reason}")
        self.file = file
        self.line_no = line_no
        self.reason = reason


class StatementTooLarge(StatementRejected):
    """Refused for its size once unpacked (a gzip or a zip member past its bound, a zip bomb),
    found while unpacking: nothing beyond the bound is read."""
