"""WeChat Pay's trade bill read strictly: what a good bill gives, and every refusal with its
line. Bills are written by the channel simulator's writer, then broken by hand."""

from __future__ import annotations

import gzip
from datetime import date, datetime, timedelta

import pytest

from fundhub.channel_simulator.bills import BillRow, wechatpay_bill
from fundhub.common.clock import BANK_TZ
from fundhub.reconciliation.statement import LineKind, Source, StatementRejected, Totals
from fundhub.reconciliation.wechatpay_bill import parse_wechatpay_bill, stream_wechatpay_bill

DAY = date(2026, 11, 30)
AT = datetime(2026, 11, 30, 9, 30, 5, tzinfo=BANK_TZ)


def rows() -> list[BillRow]:
    return [
        BillRow("PAYMENT", AT, "wxapp", "1900000001", "ORD1", "4200000001", 12345, "咖啡, 大杯",
                "SUCCESS", fee_fen=74),
        BillRow("PAYMENT", AT + timedelta(hours=1), "wxapp", "1900000001", "ORD2", "4200000002",
                29, "茶", "SUCCESS", fee_fen=0),
        BillRow("REFUND", AT + timedelta(hours=2), "wxapp", "1900000001", "ORD1", "4200000001",
                12345, "咖啡", "SUCCESS", out_refund_no="RF1", refund_id="5030000001",
                refund_fen=345, fee_fen=2),
    ]  # fmt: skip


def bill() -> bytes:
    return wechatpay_bill(rows())


def text_lines() -> list[str]:
    return bill().decode("utf-8").split("\r\n")


def joined(lines: list[str]) -> bytes:
    return "\r\n".join(lines).encode("utf-8")


def refused(data: bytes) -> StatementRejected:
    with pytest.raises(StatementRejected) as caught:
        parse_wechatpay_bill(data, DAY, "bill.csv")
    assert caught.value.file == "bill.csv"
    return caught.value


def test_a_bill_reads_to_exact_fen_with_its_kinds_references_and_fees() -> None:
    statement = parse_wechatpay_bill(bill(), DAY)
    assert statement.source is Source.WECHATPAY and statement.day == DAY
    payment, small, refund = statement.lines
    assert (payment.line_no, payment.kind, payment.reference, payment.source_ref) == (
        2, LineKind.PAYMENT, "ORD1", "4200000001",
    )  # fmt: skip
    assert (payment.amount_fen, payment.fee_fen, payment.status) == (12345, 74, "SUCCESS")
    assert payment.occurred_at == AT
    assert small.amount_fen == 29  # 0.29 yuan: a float would make it 28.999…
    assert (refund.kind, refund.reference, refund.source_ref) == (
        LineKind.REFUND, "RF1", "5030000001",
    )  # fmt: skip
    assert (refund.amount_fen, refund.fee_fen, refund.status) == (345, 2, "SUCCESS")
    assert statement.totals == Totals(count=3, amount_fen=12374, refund_fen=345, fee_fen=72)


def test_gzip_as_tar_type_gzip_gives_the_same_statement() -> None:
    assert parse_wechatpay_bill(gzip.compress(bill()), DAY) == parse_wechatpay_bill(bill(), DAY)


def test_the_refund_bill_type_with_its_two_more_columns_reads() -> None:
    statement = parse_wechatpay_bill(wechatpay_bill(rows(), "REFUND"), DAY)
    assert [line.reference for line in statement.lines] == ["RF1"]
    assert statement.totals == Totals(count=1, amount_fen=0, refund_fen=345, fee_fen=-2)


def test_a_bom_and_lf_line_ends_are_taken() -> None:
    data = b"\xef\xbb\xbf" + bill().replace(b"\r\n", b"\n")
    assert len(parse_wechatpay_bill(data, DAY).lines) == 3


@pytest.mark.parametrize(
    ("amount", "why"),
    [("12.345", "订单金额"), ("1e3", "订单金额"), ("", "订单金额"), ("１.00", "订单金额"),
     ("-1.00", "订单金额"), ("01.00", "订单金额"), ("12,00", "订单金额")],
)  # fmt: skip
def test_a_bad_amount_refuses_the_file_naming_its_line(amount: str, why: str) -> None:
    lines = text_lines()
    lines[2] = lines[2].replace("`0.29,`0.00,`", f"`{amount},`0.00,`")  # 订单金额 of ORD2
    lines[2] = lines[2].replace("`CNY,`0.29,", f"`CNY,`{amount},")  # 应结订单金额 too
    error = refused(joined(lines))
    assert error.line_no == 3 and why in error.reason


def test_a_missing_column_refuses_the_line() -> None:
    lines = text_lines()
    lines[1] = lines[1].rsplit(",`", 1)[0]
    error = refused(joined(lines))
    assert (error.line_no, error.reason) == (2, "26 values where the header names 27")


def test_a_header_missing_a_column_is_not_a_trade_bill() -> None:
    lines = text_lines()
    lines[0] = lines[0].replace(",手续费", "")
    assert refused(joined(lines)).line_no == 1


@pytest.mark.parametrize(
    ("position", "value", "named"),
    [(0, "`4", "总交易单数"), (1, "`123.75", "应结订单总金额"), (2, "`3.44", "退款总金额"),
     (4, "`0.73", "手续费总金额"), (5, "`0.00", "订单总金额"), (6, "`0.00", "申请退款总金额")],
)  # fmt: skip
def test_a_summary_total_that_the_details_do_not_add_up_to_is_refused(
    position: int, value: str, named: str
) -> None:
    lines = text_lines()
    summary = lines[5].split(",")
    summary[position] = value
    lines[5] = ",".join(summary)
    error = refused(joined(lines))
    assert error.line_no == 6 and error.reason.startswith(named)


def test_a_duplicate_header_is_refused() -> None:
    lines = text_lines()
    lines.insert(2, lines[0])
    error = refused(joined(lines))
    assert (error.line_no, error.reason) == (3, "the header again (a duplicate header)")


def test_a_value_without_its_backtick_is_refused() -> None:
    lines = text_lines()
    lines[1] = lines[1][1:]
    assert refused(joined(lines)).line_no == 2


def test_no_summary_is_a_truncated_bill() -> None:
    lines = text_lines()[:4]
    error = refused(joined(lines))
    assert error.reason == "no summary after the details"


def test_a_line_after_the_summary_is_refused() -> None:
    lines = text_lines()
    lines[-1] = lines[1]
    assert refused(joined(lines)).line_no == 7


@pytest.mark.parametrize(
    ("old", "new", "why"),
    [("`SUCCESS,`OTHERS", "`PAID,`OTHERS", "交易状态"),
     ("`2026-11-30 09:30:05", "`2026-11-30T09:30:05", "交易时间"),
     ("`2026-11-30 09:30:05", "`2026-02-30 09:30:05", "交易时间"),
     ("`CNY", "`USD", "货币种类"),
     (",`ORD1,", ",`,", "商户订单号"),
     ("`0.74,", "`-0.74,", "negative on a payment")],
)  # fmt: skip
def test_a_field_out_of_its_domain_is_refused(old: str, new: str, why: str) -> None:
    lines = text_lines()
    lines[1] = lines[1].replace(old, new)
    error = refused(joined(lines))
    assert error.line_no == 2 and why in error.reason


def test_a_refund_whose_fee_is_charged_is_refused() -> None:
    lines = text_lines()
    lines[3] = lines[3].replace("`-0.02,", "`0.02,")
    assert "given back" in refused(joined(lines)).reason


def test_a_truncated_gzip_is_refused_whole() -> None:
    packed = gzip.compress(bill())
    error = refused(packed[: len(packed) // 2])
    assert (error.line_no, error.reason) == (0, "truncated gzip file")


def test_bytes_that_are_not_utf8_are_refused_with_their_line() -> None:
    data = bill().decode("utf-8").encode("gbk")
    error = refused(data)
    assert error.line_no == 1 and "not utf-8" in error.reason


def test_an_empty_file_is_refused() -> None:
    assert refused(b"").reason == "empty file"


def _chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1 << 20])
@pytest.mark.parametrize("packed", [False, True])
def test_read_in_chunks_of_any_size_it_is_the_same_bill(size: int, packed: bool) -> None:
    data = gzip.compress(bill()) if packed else bill()
    stream = stream_wechatpay_bill(_chunked(data, size), DAY, "bill.csv")
    assert stream.whole() == parse_wechatpay_bill(bill(), DAY)
    assert stream.merchant == "1900000001"  # the 商户号 of every line


def test_a_wrong_summary_is_refused_after_every_line_was_given() -> None:
    lines = text_lines()
    lines[-2] = lines[-2].replace("`3,", "`4,", 1)  # 总交易单数 4, three lines above it
    stream = stream_wechatpay_bill(_chunked(joined(lines), 5), DAY, "bill.csv")
    given = []
    with pytest.raises(StatementRejected) as caught:
        for line in stream.lines:
            given.append(line)
    assert len(given) == 3 and caught.value.line_no == 6 and stream.totals is None


def test_a_bad_byte_in_a_later_chunk_names_its_line() -> None:
    data = bill()
    at = data.index(b"ORD2")
    broken = data[:at] + b"\xff" + data[at + 1 :]
    with pytest.raises(StatementRejected) as caught:
        stream_wechatpay_bill(_chunked(broken, 16), DAY, "bill.csv").whole()
    assert caught.value.line_no == 3


def test_a_truncated_gzip_stream_is_refused_at_its_end() -> None:
    packed = gzip.compress(bill())[:-12]
    with pytest.raises(StatementRejected, match="truncated"):
        stream_wechatpay_bill(_chunked(packed, 10), DAY, "bill.csv").whole()
