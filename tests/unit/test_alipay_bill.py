"""Alipay's bill zip read strictly: what a good zip gives, and every refusal with its file and
line. Zips are written by the channel simulator's writer, then broken by hand."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from datetime import date, datetime, timedelta

import pytest

from fundhub.channel_simulator.bills import BillRow, alipay_bill
from fundhub.common.clock import BANK_TZ
from fundhub.reconciliation.alipay_bill import parse_alipay_bill, stream_alipay_bill
from fundhub.reconciliation.statement import (
    LineKind,
    Source,
    StatementRejected,
    StatementTooLarge,
    Totals,
)

DAY = date(2026, 11, 30)
AT = datetime(2026, 11, 30, 23, 59, 59, tzinfo=BANK_TZ)
SELLER = "2088000000000001"
DETAILS = f"{SELLER}_20261130_业务明细.csv"
SUMMARY = f"{SELLER}_20261130_业务明细(汇总).csv"


def rows() -> list[BillRow]:
    return [
        BillRow("PAYMENT", AT - timedelta(hours=3), "app", SELLER, "ORD1", "2026113022001", 10000,
                "商品\t甲", "SUCCESS", fee_fen=60),
        BillRow("PAYMENT", AT - timedelta(hours=2), "app", SELLER, "ORD2", "2026113022002", 1,
                "乙", "SUCCESS", fee_fen=0),
        BillRow("REFUND", AT, "app", SELLER, "ORD1", "2026113022001", 10000, "商品", "SUCCESS",
                out_refund_no="ORD1", refund_fen=2550, fee_fen=15),
    ]  # fmt: skip


def members(data: bytes | None = None) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data or alipay_bill(rows(), SELLER, DAY)[1])) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def zipped(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def edited(name: str, change: Callable[[list[str]], None]) -> bytes:
    files = members()
    lines = files[name].decode("gbk").split("\r\n")
    change(lines)
    files[name] = "\r\n".join(lines).encode("gbk")
    return zipped(files)


def refused(data: bytes) -> StatementRejected:
    with pytest.raises(StatementRejected) as caught:
        parse_alipay_bill(data, DAY, "bill.zip")
    return caught.value


def test_a_bill_reads_payments_and_refunds_to_exact_fen() -> None:
    statement = parse_alipay_bill(alipay_bill(rows(), SELLER, DAY)[1], DAY)
    assert statement.source is Source.ALIPAY
    first, second, refund = statement.lines
    assert (first.line_no, first.kind, first.reference, first.source_ref) == (
        6, LineKind.PAYMENT, "ORD1", "2026113022001",
    )  # fmt: skip
    assert (first.amount_fen, first.fee_fen, first.status) == (10000, 60, "交易")
    assert second.amount_fen == 1
    assert (refund.kind, refund.reference, refund.amount_fen, refund.fee_fen) == (
        LineKind.REFUND, "ORD1", 2550, 15,
    )  # fmt: skip
    assert (refund.status, refund.occurred_at) == ("退款", AT)
    assert statement.totals == Totals(count=3, amount_fen=10001, refund_fen=2550, fee_fen=45)


def test_gbk_names_without_the_utf8_flag_are_read_as_alipay_writes_them() -> None:
    buffer = io.BytesIO()
    names = {}
    with zipfile.ZipFile(buffer, "w") as archive:
        for mark, (name, content) in zip("AB", members().items(), strict=True):
            placeholder = mark * len(name.encode("gbk"))  # ASCII: zipfile sets no UTF-8 flag
            names[placeholder.encode()] = name.encode("gbk")
            archive.writestr(placeholder, content)
    raw = buffer.getvalue()
    for placeholder, gbk in names.items():
        raw = raw.replace(placeholder, gbk)
    assert len(parse_alipay_bill(raw, DAY).lines) == 3


def test_a_bad_amount_is_refused_with_the_file_and_line() -> None:
    def change(lines: list[str]) -> None:
        lines[5] = lines[5].replace("100.00\t", "100.0.0\t", 1)

    error = refused(edited(DETAILS, change))
    assert (error.file, error.line_no) == (DETAILS, 6)
    assert "订单金额（元）" in error.reason


def test_a_missing_column_is_refused() -> None:
    def change(lines: list[str]) -> None:
        lines[4] = lines[4].replace(",服务费（元）", "")

    error = refused(edited(DETAILS, change))
    assert (error.line_no, error.reason) == (5, "not the header (missing column 服务费（元）)")


def test_a_line_short_of_values_is_refused() -> None:
    def change(lines: list[str]) -> None:
        lines[6] = lines[6].rsplit(",", 1)[0]

    error = refused(edited(DETAILS, change))
    assert (error.line_no, error.reason) == (7, "24 values where the header names 25")


@pytest.mark.parametrize(
    ("column", "value"),
    [(2, "3"), (3, "0"), (4, "200.02"), (5, "74.52"), (9, "-0.44"), (11, "75.00")],
)
def test_a_summary_total_the_details_do_not_add_up_to_is_refused(column: int, value: str) -> None:
    def change(lines: list[str]) -> None:
        values = lines[6].split(",")
        values[column] = value + "\t"
        lines[6] = ",".join(values)

    error = refused(edited(SUMMARY, change))
    assert (error.file, error.line_no) == (SUMMARY, 7)
    assert "but" in error.reason


def test_no_end_marker_is_a_truncated_file() -> None:
    def change(lines: list[str]) -> None:
        del lines[8:]

    error = refused(edited(DETAILS, change))
    assert "no 业务明细列表结束 marker" in error.reason


def test_a_truncated_zip_is_refused_whole() -> None:
    data = alipay_bill(rows(), SELLER, DAY)[1]
    error = refused(data[: len(data) - 40])
    assert error.line_no == 0 and "zip" in error.reason


def test_a_member_cut_short_inside_the_zip_is_refused() -> None:
    data = bytearray(alipay_bill(rows(), SELLER, DAY)[1])
    data[60:70] = b"\x00" * 10  # inside the first member's compressed bytes: its CRC fails
    assert refused(bytes(data)).line_no == 0


def test_utf8_where_gbk_is_expected_is_named_as_such() -> None:
    files = members()
    files[DETAILS] = files[DETAILS].decode("gbk").encode("utf-8")
    error = refused(zipped(files))
    assert (error.file, error.line_no) == (DETAILS, 0)
    assert error.reason == "UTF-8 text where GBK is expected"


def test_a_zip_without_the_summary_is_refused() -> None:
    files = members()
    del files[SUMMARY]
    assert "0 files named …_业务明细(汇总).csv" in refused(zipped(files)).reason


@pytest.mark.parametrize(
    ("old", "new", "why"),
    [("交易\t", "转账\t", "业务类型"),
     ("2026-11-30 20:59:59", "2026/11/30 20:59:59", "完成时间"),
     ("-0.60\t", "0.60\t", "服务费"),
     (",ORD1\t,", ",\t,", "empty")],
)  # fmt: skip
def test_a_field_out_of_its_domain_is_refused(old: str, new: str, why: str) -> None:
    def change(lines: list[str]) -> None:
        lines[5] = lines[5].replace(old, new)

    error = refused(edited(DETAILS, change))
    assert error.line_no == 6 and why in error.reason


def test_a_refund_with_a_positive_amount_received_is_refused() -> None:
    def change(lines: list[str]) -> None:
        lines[7] = lines[7].replace("-25.50\t", "25.50\t")

    assert "negative" in refused(edited(DETAILS, change)).reason


def test_a_line_outside_the_markers_is_refused() -> None:
    def change(lines: list[str]) -> None:
        lines.insert(1, "2026113022009,ORD9")

    assert refused(edited(DETAILS, change)).line_no == 2


def test_read_from_a_file_lines_are_given_as_read_and_the_summary_checked_at_the_end() -> None:
    good = alipay_bill(rows(), SELLER, DAY)[1]
    whole = stream_alipay_bill(io.BytesIO(good), DAY)
    assert whole.whole() == parse_alipay_bill(good, DAY)
    assert whole.merchant == SELLER  # the seller id its members are named by

    def change(lines: list[str]) -> None:
        lines[6] = lines[6].replace(",2\t,", ",3\t,", 1)  # 交易订单总笔数

    stream = stream_alipay_bill(io.BytesIO(edited(SUMMARY, change)), DAY, "bill.zip")
    given = []
    with pytest.raises(StatementRejected) as caught:
        for line in stream.lines:
            given.append(line)
    assert len(given) == 3 and caught.value.file == SUMMARY and stream.totals is None


def test_a_zip_bomb_is_refused_while_unpacking_past_its_pack_ratio() -> None:
    files = members()
    files[DETAILS] = b"#" * 60 + b"\r\n" + b"#\r\n" * 2_000_000  # 6 MB packing ~1,000 to 1
    bomb = zipped(files)
    assert len(bomb) < 20_000
    error = refused(bomb)
    assert isinstance(error, StatementTooLarge) and error.file == DETAILS
    assert "unpacks to more than" in error.reason


def test_a_declared_size_past_the_limit_is_refused_before_unpacking() -> None:
    with pytest.raises(StatementTooLarge):
        stream_alipay_bill(io.BytesIO(alipay_bill(rows(), SELLER, DAY)[1]), DAY, limit=100).whole()


def test_a_byte_not_of_gbk_in_the_details_names_its_line() -> None:
    def change(lines: list[str]) -> None:
        lines[6] = lines[6].replace("ORD2", "ORD\udcff", 1)

    files = members()
    text = files[DETAILS].decode("gbk").split("\r\n")
    change(text)
    files[DETAILS] = "\r\n".join(text).encode("gbk", "surrogateescape")
    error = refused(zipped(files))
    assert (error.file, error.line_no, error.reason) == (DETAILS, 7, "not gbk text")


def test_a_line_without_end_is_refused_before_it_fills_memory() -> None:
    files = members()
    files[DETAILS] = files[DETAILS] + b"9" * 200_000
    error = refused(zipped(files))
    assert error.file == DETAILS and "longer than" in error.reason
