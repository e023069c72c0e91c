"""The depository bank's daily file of the platform's accounts (``docs/bank-daily-files.md``),
read strictly: every transaction of the day per sub-account, each sub-account's opening and
closing balance, and the trailer's control totals.

Beyond each field, the file must agree with itself before anything is loaded: sequence numbers
run from 1 without a gap, each sub-account's balance after a line is its balance before it plus
or minus the amount, a balance record's opening, closing and sums are what its lines say, and
the trailer's counts and sums are the records'. The bank's fee column is informational (fees
are booked as lines of their own, business ``FEE``), so it does not move the running balance.

Read as its bytes come (as WeChat Pay's bill): each D record given as soon as it is read, the
balances and the trailer checked at the end, so memory is that of the day's accounts, not of
its lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date

from fundhub.reconciliation.bill_bytes import text_lines
from fundhub.reconciliation.bill_fields import Times, fen, signed_fen
from fundhub.reconciliation.gc_pause import collector_paused
from fundhub.reconciliation.statement import (
    ClosingBalance,
    LineKind,
    LineStream,
    Source,
    Statement,
    StatementLine,
    StatementRejected,
    Totals,
)

ENCODING = "gbk"
SEPARATOR = "|"
FILE_TYPE = "FUNDS"
VERSION = "1.0"
HEADER_FIELDS = ("record", "file_type", "app_id", "file_date", "created_at", "version")
DETAIL_FIELDS = (
    "record",
    "seq",
    "serial_no",
    "account_no",
    "direction",
    "amount",
    "fee",
    "balance",
    "currency",
    "business_type",
    "business_ref",
    "counterparty_account",
    "counterparty_name",
    "trans_time",
    "status",
    "remark",
)
BALANCE_FIELDS = (
    "record",
    "seq",
    "account_no",
    "currency",
    "opening_balance",
    "closing_balance",
    "credit_count",
    "credit_amount",
    "debit_count",
    "debit_amount",
)
TRAILER_FIELDS = (
    "record",
    "detail_count",
    "credit_count",
    "credit_amount",
    "debit_count",
    "debit_amount",
    "fee_amount",
    "balance_count",
    "closing_total",
)
BUSINESS_TYPES = frozenset(
    {
        "TRANSFER_IN",  # money arrived in a sub-account (来账)
        "TRANSFER_REVERSAL",  # an arrival taken back (冲正)
        "PAYOUT",  # a payout or withdrawal paid out
        "PAYOUT_RETURN",  # a payout returned by the payee's bank
        "SPLIT_IN",  # a split (分账) credited to a member
        "SPLIT_REFUND",  # a refund after the split: the member's share debited (分账退款)
        "FEE",  # a fee the bank charged
        "ADJUSTMENT",  # the bank's own correction
    }
)
STATUSES = frozenset({"SUCCESS", "REVERSED"})
CURRENCIES = frozenset({"CNY"})
DEFAULT_FILE = "FUNDS.txt"


def file_name(app_id: str, day: date) -> str:
    """The file's name as the bank gives it."""
    return f"FUNDS_{app_id}_{day:%Y%m%d}.txt"


@dataclass(slots=True)
class _Account:
    opening: int
    balance: int
    credit_count: int = 0
    credit_amount: int = 0
    debit_count: int = 0
    debit_amount: int = 0


@dataclass(slots=True)
class _Sums:
    """The day's running control totals, as the trailer states them."""

    credit_count: int = 0
    credit_amount: int = 0
    debit_count: int = 0
    debit_amount: int = 0
    fee: int = 0


def parse_bank_file(data: bytes, day: date, file: str = DEFAULT_FILE) -> Statement:
    """The daily file of ``day`` as a ``Statement`` with its closing balances, or
    ``StatementRejected``."""
    with collector_paused():
        return stream_bank_file((data,), day, file).whole()


def stream_bank_file(chunks: Iterable[bytes], day: date, file: str = DEFAULT_FILE) -> LineStream:
    """The daily file read as its bytes come: each D record given as soon as it is read; the
    balances and the trailer checked at the end, their refusal raised from the last ``next``."""
    stream = LineStream(Source.BANK, day, file)
    stream.feed(_details(text_lines(chunks, ENCODING, file), day, stream, file))
    return stream


def _details(
    rows: Iterator[str], day: date, stream: LineStream, file: str
) -> Iterator[StatementLine]:
    first = next(rows, None)
    if first is None:
        raise StatementRejected(file, 0, "empty file")
    stream.merchant = _header(first, day, file)
    accounts: dict[str, _Account] = {}
    sums = _Sums()
    line_no = 1
    count = 0
    width = len(DETAIL_FIELDS)
    credit, debit = LineKind.CREDIT, LineKind.DEBIT
    times = Times("trans_time")
    row: str | None = None
    for row in rows:
        line_no += 1
        if not row.startswith("D|"):
            break
        values = row.split(SEPARATOR)
        if len(values) != width:
            raise StatementRejected(file, line_no, f"{len(values)} fields, a D record has {width}")
        try:
            if values[1] != str(count + 1):
                raise ValueError(f"seq {values[1]!r} where {count + 1} comes next")
            account, direction = values[3], values[4]
            amount = fen(values[5], "amount")
            line_fee = fen(values[6], "fee")
            balance = signed_fen(values[7], "balance")
            if amount == 0:
                raise ValueError("amount: 0")
            if not account or not values[2] or not values[10]:
                raise ValueError("account_no, serial_no or business_ref empty")
            if values[8] not in CURRENCIES:
                raise ValueError(f"currency: {values[8]!r}")
            if values[9] not in BUSINESS_TYPES:
                raise ValueError(f"business_type: {values[9]!r}")
            if values[14] not in STATUSES:
                raise ValueError(f"status: {values[14]!r}")
            if direction == "C":
                kind, moved = credit, amount
            elif direction == "D":
                kind, moved = debit, -amount
            else:
                raise ValueError(f"direction: {direction!r}, neither C nor D")
            occurred_at = times[values[13]]
            if occurred_at.date() != day:
                raise ValueError(f"trans_time {values[13]} is not on {day}")
            known = accounts.get(account)
            if known is None:
                known = accounts[account] = _Account(balance - moved, balance - moved)
            if known.balance + moved != balance:
                raise ValueError(
                    f"balance {balance} after {direction} {amount} where the account held "
                    f"{known.balance}"
                )
        except ValueError as exc:
            raise StatementRejected(file, line_no, str(exc)) from None
        known.balance = balance
        if kind is credit:
            known.credit_count += 1
            known.credit_amount += amount
            sums.credit_count += 1
            sums.credit_amount += amount
        else:
            known.debit_count += 1
            known.debit_amount += amount
            sums.debit_count += 1
            sums.debit_amount += amount
        sums.fee += line_fee
        count += 1
        yield StatementLine(
            line_no,
            kind,
            values[10],
            values[2],
            amount,
            line_fee,
            values[14],
            occurred_at,
            account=account,
            balance_fen=balance,
            counterparty=values[11] or None,
            business=values[9],
        )
        row = None
    # ``row`` is the first record after the D records (at ``line_no``), or None at the end.
    balances, row, line_no = _balances(rows, row, line_no, accounts, file)
    stream.end(_trailer(rows, row, line_no, count, sums, balances, file), tuple(balances))


def _header(row: str, day: date, file: str) -> str:
    """The header checked; the app id it names (whose file it is)."""
    values = row.split(SEPARATOR)
    if len(values) != len(HEADER_FIELDS) or values[0] != "H":
        raise StatementRejected(file, 1, "not the header record (H) of a daily file")
    if values[1] != FILE_TYPE or values[5] != VERSION:
        raise StatementRejected(file, 1, f"file type {values[1]!r} version {values[5]!r}")
    if values[3] != f"{day:%Y%m%d}":
        raise StatementRejected(file, 1, f"the file of {values[3]!r}, not of {day:%Y%m%d}")
    if not values[2]:
        raise StatementRejected(file, 1, "app_id empty")
    return values[2]


def _balances(
    rows: Iterator[str],
    row: str | None,
    line_no: int,
    accounts: dict[str, _Account],
    file: str,
) -> tuple[list[ClosingBalance], str | None, int]:
    """The B records from ``row`` (at ``line_no``); returns them, and the first other record
    with its line number (None: the file ended)."""
    width = len(BALANCE_FIELDS)
    balances: list[ClosingBalance] = []
    seen: set[str] = set()
    while row is not None and row.startswith("B|"):
        values = row.split(SEPARATOR)
        if len(values) != width:
            raise StatementRejected(file, line_no, f"{len(values)} fields, a B record has {width}")
        try:
            if values[1] != str(len(balances) + 1):
                raise ValueError(f"seq {values[1]!r} where {len(balances) + 1} comes next")
            account = values[2]
            if not account or account in seen:
                raise ValueError(f"account_no {account!r} empty or twice")
            if values[3] not in CURRENCIES:
                raise ValueError(f"currency: {values[3]!r}")
            opening = signed_fen(values[4], "opening_balance")
            closing = signed_fen(values[5], "closing_balance")
            sums = tuple(fen(values[i], BALANCE_FIELDS[i]) for i in range(6, 10))
            known = accounts.get(account) or _Account(opening, opening)
            expected = (
                known.opening,
                known.balance,
                known.credit_count,
                known.credit_amount,
                known.debit_count,
                known.debit_amount,
            )
            if (opening, closing, *sums) != expected:
                raise ValueError(
                    "opening, closing, credits and debits "
                    f"{(opening, closing, *sums)} but the D records say {expected}"
                )
        except ValueError as exc:
            raise StatementRejected(file, line_no, str(exc)) from None
        seen.add(account)
        balances.append(ClosingBalance(line_no, account, closing, values[3]))
        row = next(rows, None)
        line_no += 1
    missing = sorted(set(accounts) - seen)
    if missing:
        raise StatementRejected(
            file, line_no if row is not None else 0, f"no B record for account {missing[0]}"
        )
    return balances, row, line_no


def _trailer(
    rows: Iterator[str],
    row: str | None,
    line_no: int,
    count: int,
    sums: _Sums,
    balances: list[ClosingBalance],
    file: str,
) -> Totals:
    if row is None:
        raise StatementRejected(file, 0, "no trailer record (T): a truncated file")
    if next(rows, None) is not None:
        raise StatementRejected(file, line_no + 1, "a record after the trailer")
    values = row.split(SEPARATOR)
    if values[0] != "T":
        raise StatementRejected(file, line_no, f"record type {values[0]!r} out of place")
    if len(values) != len(TRAILER_FIELDS):
        raise StatementRejected(
            file, line_no, f"{len(values)} fields, a T record has {len(TRAILER_FIELDS)}"
        )
    expected = (
        count,
        sums.credit_count,
        sums.credit_amount,
        sums.debit_count,
        sums.debit_amount,
        sums.fee,
        len(balances),
        sum(balance.balance_fen for balance in balances),
    )
    try:
        written = tuple(
            (signed_fen if name == "closing_total" else fen)(values[i], name)
            for i, name in enumerate(TRAILER_FIELDS)
            if i
        )
    except ValueError as exc:
        raise StatementRejected(file, line_no, str(exc)) from None
    for name, got, want in zip(TRAILER_FIELDS[1:], written, expected, strict=True):
        if got != want:
            raise StatementRejected(
                file, line_no, f"control total {name} {got} but the records say {want}"
            )
    return Totals(count, sums.credit_amount, sums.debit_amount, sums.fee)
