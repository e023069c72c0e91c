"""Data initialisation files for tests: merchants and balances CSV as a platform would export
them (valid identity and licence numbers from ``support.merchants``), with their trailers."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from support.merchants import LICENCES, RESIDENT_IDS

MERCHANT_HEADER = (
    "merchantNo",
    "name",
    "type",
    "legalPersonName",
    "legalPersonIdType",
    "legalPersonIdNumber",
    "licenceNo",
    "licenceValidUntil",
    "contactName",
    "contactPhone",
    "contactEmail",
)


def merchant_row(merchant_no: str, name: str | None = None, index: int = 0) -> list[str]:
    """An ENTERPRISE for even ``index``, an INDIVIDUAL for odd."""
    if index % 2 == 0:
        return [
            merchant_no, name or f"Shop {merchant_no}", "ENTERPRISE", "张三", "RESIDENT_ID",
            RESIDENT_IDS[index % 3], LICENCES[index % 3], "2035-12-31", "李四", "13800138000",
            "ops@shop.example",
        ]  # fmt: skip
    return [
        merchant_no, name or f"Stall {merchant_no}", "INDIVIDUAL", "王五", "RESIDENT_ID",
        RESIDENT_IDS[index % 3], "", "", "王五", "13900139000", "",
    ]  # fmt: skip


def csv_text(header: Sequence[str], rows: Sequence[Sequence[str]], trailer: Sequence[str]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    writer.writerow(trailer)
    return out.getvalue().encode()


def merchants_file(
    merchant_nos: Sequence[str], *, count: int | None = None, names: dict[str, str] | None = None
) -> bytes:
    rows = [merchant_row(no, (names or {}).get(no), index) for index, no in enumerate(merchant_nos)]
    return csv_text(MERCHANT_HEADER, rows, ["TRAILER", str(len(rows) if count is None else count)])


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def balances_file(
    balances: Sequence[tuple[str, int]], *, count: int | None = None, total: int | None = None
) -> bytes:
    rows = [[no, "CNY", yuan(fen)] for no, fen in balances]
    trailer = [
        "TRAILER",
        str(len(rows) if count is None else count),
        yuan(sum(f for _, f in balances) if total is None else total),
    ]
    return csv_text(("merchantNo", "currency", "available"), rows, trailer)
