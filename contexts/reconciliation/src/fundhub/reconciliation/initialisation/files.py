"""The data initialisation files (资金导入), read strictly. Pure: bytes in, rows or a refusal.

Two CSV files the platform exports from its own books before going live on the depository:

- merchants: ``merchantNo,name,type,legalPersonName,legalPersonIdType,legalPersonIdNumber,
  contactName,contactPhone`` and, optional, ``licenceNo,licenceValidUntil,contactEmail`` (in any
  order); each row is what ``POST /v1/merchants`` would take, checked by the same rules
  (``merchants.materials``). Trailer ``TRAILER,<rows>``: a merchants file carries no amount.
- balances: ``merchantNo,currency,available``: the merchant's funds, yuan with at most two
  decimals, never negative, ``CNY`` (``RMB`` read as CNY). Trailer ``TRAILER,<rows>,<sum>``.

UTF-8 (a BOM is allowed), a header line, then one row per merchant, then the trailer as the last
line. The trailer is the exporter's control total: a file cut short, a row lost or an amount
mangled on the way shows as a count or a sum that does not match, and the file is refused whole.
So is a file with any unreadable line: every problem is reported with its line number (the
first ``MAX_REPORTED``, and how many in all), and nothing is imported.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from fundhub.common.money import MoneyError, parse_yuan
from fundhub.merchants.materials import InvalidMerchant, Registration, parse_registration

TRAILER = "TRAILER"
MAX_REPORTED = 100
MAX_ROWS = 1_000_000
# 10^13 yuan in fen: beyond any merchant's balance, well inside a bigint (and a sum of a
# million of them too).
MAX_AMOUNT_FEN = 10**15
CURRENCY = "CNY"
_CURRENCIES = {"CNY": "CNY", "RMB": "CNY"}

MERCHANT_REQUIRED = (
    "merchantNo",
    "name",
    "type",
    "legalPersonName",
    "legalPersonIdType",
    "legalPersonIdNumber",
    "contactName",
    "contactPhone",
)
MERCHANT_OPTIONAL = ("licenceNo", "licenceValidUntil", "contactEmail")
BALANCE_COLUMNS = ("merchantNo", "currency", "available")


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a line cannot be imported; ``line`` 0 is the file as such."""

    line: int
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "file"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "message": self.message}


class FileRefused(ValueError):
    """The file is refused whole; ``problems`` are the first ``MAX_REPORTED`` of ``count``."""

    def __init__(self, problems: Sequence[Problem], count: int | None = None) -> None:
        self.problems = tuple(problems[:MAX_REPORTED])
        self.count = len(problems) if count is None else count
        first = str(self.problems[0]) if self.problems else "refused"
        more = f" (and {self.count - 1} more)" if self.count > 1 else ""
        super().__init__(first + more)


@dataclass(frozen=True, slots=True)
class Trailer:
    line: int
    count: int
    amount_fen: int | None  # balances only


@dataclass(frozen=True, slots=True)
class MerchantRow:
    line: int
    registration: Registration

    @property
    def merchant_no(self) -> str:
        return self.registration.merchant_no


@dataclass(frozen=True, slots=True)
class BalanceRow:
    line: int
    merchant_no: str
    currency: str
    amount_fen: int


@dataclass(frozen=True, slots=True)
class MerchantFile:
    rows: tuple[MerchantRow, ...]
    trailer: Trailer


@dataclass(frozen=True, slots=True)
class BalanceFile:
    rows: tuple[BalanceRow, ...]
    trailer: Trailer

    @property
    def amount_fen(self) -> int:
        return sum(row.amount_fen for row in self.rows)


class _Problems:
    """Collects problems; keeps the first ``MAX_REPORTED`` and counts the rest."""

    def __init__(self) -> None:
        self.kept: list[Problem] = []
        self.count = 0

    def add(self, line: int, field: str | None, message: str) -> None:
        self.count += 1
        if len(self.kept) < MAX_REPORTED:
            self.kept.append(Problem(line, field, message))

    def refuse_if_any(self) -> None:
        if self.count:
            raise FileRefused(self.kept, self.count)


def read_merchants(data: bytes) -> MerchantFile:
    """The merchants file, every row checked as a registration, or ``FileRefused``."""

    def row_of(line: int, cells: dict[str, str], problems: _Problems) -> MerchantRow | None:
        registration = _registration(line, cells, problems)
        return None if registration is None else MerchantRow(line, registration)

    rows, trailer, problems = _read(data, MERCHANT_REQUIRED, MERCHANT_OPTIONAL, row_of, False)
    problems.refuse_if_any()
    assert trailer is not None
    return MerchantFile(tuple(rows), trailer)


def read_balances(data: bytes) -> BalanceFile:
    """The balances file, every amount exact in fen and never negative, or ``FileRefused``."""
    rows, trailer, problems = _read(data, BALANCE_COLUMNS, (), _balance, True)
    if trailer is not None and not problems.count:
        total = sum(row.amount_fen for row in rows)
        if trailer.amount_fen != total:
            problems.add(
                trailer.line,
                "TRAILER",
                f"the rows sum to {_yuan(total)}, the trailer says {_yuan(trailer.amount_fen)}",
            )
    problems.refuse_if_any()
    assert trailer is not None
    return BalanceFile(tuple(rows), trailer)


_Row = TypeVar("_Row", MerchantRow, BalanceRow)


def _read(
    data: bytes,
    required: Sequence[str],
    optional: Sequence[str],
    row_of: Callable[[int, dict[str, str], _Problems], _Row | None],
    amounts: bool,
) -> tuple[list[_Row], Trailer | None, _Problems]:
    """Either file's rows (each read by ``row_of``, its merchant once), its trailer and the
    problems found (the row count against the trailer's among them); refused if no header."""
    problems = _Problems()
    header, body, trailer = _split(data, problems, amounts=amounts)
    if header is None:
        problems.refuse_if_any()
        raise FileRefused([Problem(0, None, "no header line")])
    columns = _columns(header, required, optional, problems)
    rows: list[_Row] = []
    first_seen: dict[str, int] = {}
    if columns is None:
        return rows, trailer, problems
    for line, values in body:
        cells = _cells(line, values, columns, problems)
        if cells is None:
            continue
        row = row_of(line, cells, problems)
        if row is None:
            continue
        _unique(line, row.merchant_no, first_seen, problems)
        rows.append(row)
    if trailer is not None:
        _check_count(trailer, len(body), problems)
    return rows, trailer, problems


# --- the file's lines ---------------------------------------------------------------------------


def _split(
    data: bytes, problems: _Problems, *, amounts: bool
) -> tuple[list[str] | None, list[tuple[int, list[str]]], Trailer | None]:
    """Header, numbered body rows and trailer; structural problems noted."""
    text = _decode(data, problems)
    if text is None:
        return None, [], None
    records = list(_records(text, problems))
    while records and not records[-1][1]:  # blank lines at the very end are no rows
        records.pop()
    if not records:
        problems.add(0, None, "the file is empty")
        return None, [], None
    (_, header), rest = records[0], records[1:]
    trailer: Trailer | None = None
    body: list[tuple[int, list[str]]] = []
    for index, (line, values) in enumerate(rest):
        if values and values[0] == TRAILER:
            if index != len(rest) - 1:
                problems.add(line, "TRAILER", "the trailer must be the file's last line")
                continue
            trailer = _trailer(line, values, problems, amounts=amounts)
        elif not values or values == [""]:
            problems.add(line, None, "an empty line")
        else:
            body.append((line, values))
    if trailer is None and not any(v and v[0] == TRAILER for _, v in rest):
        last = records[-1][0]
        problems.add(last, "TRAILER", "no trailer line (the file may be cut short)")
    if len(body) > MAX_ROWS:
        problems.add(0, None, f"more than {MAX_ROWS} rows: split the file")
    return header, body, trailer


def _decode(data: bytes, problems: _Problems) -> str | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        problems.add(line, None, "not UTF-8 text (the file must be UTF-8)")
        return None
    return text.removeprefix("\ufeff")


def _records(text: str, problems: _Problems) -> Iterator[tuple[int, list[str]]]:
    """(first line number, values) of each CSV record; a trailing newline ends the file."""
    lines = text.splitlines(keepends=True)
    reader = csv.reader(lines, strict=True)
    line = 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problems.add(reader.line_num, None, f"not readable as CSV ({exc})")
            return
        yield line, values
        line = reader.line_num + 1


def _trailer(line: int, values: list[str], problems: _Problems, *, amounts: bool) -> Trailer | None:
    expected = 3 if amounts else 2
    shape = "TRAILER,<rows>,<sum in yuan>" if amounts else "TRAILER,<rows>"
    if len(values) != expected:
        problems.add(line, "TRAILER", f"expected {shape}")
        return None
    count_text = values[1]
    if not count_text.isascii() or not count_text.isdigit() or len(count_text) > 9:
        problems.add(line, "TRAILER", f"the row count {count_text[:20]!r} is not a number")
        return None
    amount: int | None = None
    if amounts:
        try:
            amount = parse_yuan(values[2])
        except MoneyError:
            problems.add(line, "TRAILER", f"the sum {values[2][:24]!r} is not an amount in yuan")
            return None
    return Trailer(line, int(count_text), amount)


def _check_count(trailer: Trailer, rows: int, problems: _Problems) -> None:
    if trailer.count != rows:
        problems.add(
            trailer.line, "TRAILER", f"the file has {rows} rows, the trailer says {trailer.count}"
        )


def _columns(
    header: list[str],
    required: Sequence[str],
    optional: Sequence[str],
    problems: _Problems,
) -> list[str] | None:
    names = [name.strip() for name in header]
    known = set(required) | set(optional)
    ok = True
    for name in required:
        if name not in names:
            problems.add(1, name, "missing column")
            ok = False
    for name in names:
        if name not in known:
            problems.add(1, name[:40], "unknown column")
            ok = False
        elif names.count(name) > 1:
            problems.add(1, name, "column given twice")
            ok = False
    return names if ok else None


def _cells(
    line: int, values: list[str], columns: list[str], problems: _Problems
) -> dict[str, str] | None:
    if len(values) != len(columns):
        problems.add(line, None, f"{len(values)} values for {len(columns)} columns")
        return None
    return dict(zip(columns, values, strict=True))


def _unique(line: int, merchant_no: str, first_seen: dict[str, int], problems: _Problems) -> None:
    first = first_seen.setdefault(merchant_no, line)
    if first != line:
        problems.add(line, "merchantNo", f"{merchant_no} again (first on line {first})")


# --- rows ---------------------------------------------------------------------------------------


def _registration(line: int, cells: dict[str, str], problems: _Problems) -> Registration | None:
    """The row as ``POST /v1/merchants``'s body, checked by the API's own rules."""

    def given(name: str) -> str | None:
        value = cells.get(name, "")
        return value if value != "" else None

    body: dict[str, Any] = {
        "merchantNo": cells["merchantNo"],
        "name": cells["name"],
        "type": cells["type"],
        "legalPerson": {
            "name": cells["legalPersonName"],
            "idType": cells["legalPersonIdType"],
            "idNumber": cells["legalPersonIdNumber"],
        },
        "contact": {"name": cells["contactName"], "phone": cells["contactPhone"]},
    }
    if (email := given("contactEmail")) is not None:
        body["contact"]["email"] = email
    if (licence_no := given("licenceNo")) is not None:
        body["licence"] = {"licenceNo": licence_no}
        if (valid_until := given("licenceValidUntil")) is not None:
            body["licence"]["validUntil"] = valid_until
    elif given("licenceValidUntil") is not None:
        problems.add(line, "licenceValidUntil", "given without a licenceNo")
        return None
    try:
        return parse_registration(orjson.dumps(body))
    except InvalidMerchant as exc:
        problems.add(line, _column_of(exc.field), exc.message)
        return None


_FIELD_COLUMNS = {
    "legalPerson.name": "legalPersonName",
    "legalPerson.idType": "legalPersonIdType",
    "legalPerson.idNumber": "legalPersonIdNumber",
    "licence": "licenceNo",
    "licence.licenceNo": "licenceNo",
    "licence.validUntil": "licenceValidUntil",
    "contact.name": "contactName",
    "contact.phone": "contactPhone",
    "contact.email": "contactEmail",
}


def _column_of(field: str) -> str:
    return _FIELD_COLUMNS.get(field, field)


def _balance(line: int, cells: dict[str, str], problems: _Problems) -> BalanceRow | None:
    merchant_no = cells["merchantNo"]
    before = problems.count
    if not _is_merchant_no(merchant_no):
        problems.add(line, "merchantNo", "must be 1 to 32 characters of A-Z a-z 0-9 . _ : -")
    currency = _CURRENCIES.get(cells["currency"])
    if currency is None:
        problems.add(line, "currency", "must be CNY (merchants' accounts are held in CNY)")
    text = cells["available"]
    amount = 0
    if text.startswith("-"):
        problems.add(line, "available", "negative: an opening balance is never below zero")
    else:
        try:
            amount = parse_yuan(text)
        except MoneyError:
            problems.add(line, "available", f"{text[:24]!r} is not an amount in yuan (12.34)")
        else:
            if amount > MAX_AMOUNT_FEN:
                problems.add(line, "available", "more than 10^13 yuan")
    if problems.count != before or currency is None:
        return None
    return BalanceRow(line, merchant_no, currency, amount)


def _is_merchant_no(value: str) -> bool:
    return (
        0 < len(value) <= 32 and value.isascii() and all(c.isalnum() or c in "._:-" for c in value)
    )


def _yuan(fen: int | None) -> str:
    if fen is None:
        return "?"
    return f"{fen // 100}.{fen % 100:02d}"
