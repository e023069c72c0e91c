"""The depository bank's daily file read strictly (docs/bank-daily-files.md): a good file from
the bank simulator's writer, then each refusal with its line."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from fundhub.bank_simulator.daily_files import Discrepancy, Posting, daily_file, file_name
from fundhub.common.clock import BANK_TZ
from fundhub.reconciliation import bank_file
from fundhub.reconciliation.bank_file import parse_bank_file
from fundhub.reconciliation.statement import (
    ClosingBalance,
    LineKind,
    Source,
    StatementRejected,
    Totals,
)

DAY = date(2026, 11, 30)
NOON = datetime(2026, 11, 30, 12, tzinfo=BANK_TZ)
A, B, C = "6222020000000001", "6222020000000002", "6222020000000003"


def history() -> list[Posting]:
    return [
        Posting(NOON - timedelta(days=1), A, "C", 50_000, "TRANSFER_IN", "R0", "BT0"),
        Posting(NOON - timedelta(days=1), C, "C", 7, "TRANSFER_IN", "R00", "BT00"),
        Posting(NOON, A, "C", 12_345, "TRANSFER_IN", "R1", "BT1", "6246", "付款方"),
        Posting(NOON + timedelta(hours=1), A, "D", 20_000, "PAYOUT", "PAY1", "BTX1", "6217", "收款人"),
        Posting(NOON + timedelta(hours=2), B, "C", 300, "SPLIT_IN", "SPL1", "BS101", "ORD1", "商户"),
        Posting(NOON + timedelta(days=1), B, "C", 1, "TRANSFER_IN", "R9", "BT9"),
    ]  # fmt: skip


def good(discrepancies: list[Discrepancy] | None = None) -> bytes:
    return daily_file(history(), "APP1", DAY, NOON + timedelta(days=1), discrepancies or [])


def lines() -> list[str]:
    return good().decode("gbk").split("\r\n")


def joined(rows: list[str]) -> bytes:
    return "\r\n".join(rows).encode("gbk")


def refused(data: bytes) -> StatementRejected:
    with pytest.raises(StatementRejected) as caught:
        parse_bank_file(data, DAY, "FUNDS.txt")
    return caught.value


def test_a_day_reads_with_running_balances_and_every_account_closing() -> None:
    statement = parse_bank_file(good(), DAY)
    assert statement.source is Source.BANK
    arrival, payout, split = statement.lines
    assert (arrival.line_no, arrival.kind, arrival.reference, arrival.source_ref) == (
        2, LineKind.CREDIT, "R1", "BT1",
    )  # fmt: skip
    assert (arrival.account, arrival.amount_fen, arrival.balance_fen) == (A, 12_345, 62_345)
    assert (arrival.business, arrival.status, arrival.counterparty) == (
        "TRANSFER_IN", "SUCCESS", "6246",
    )  # fmt: skip
    assert (payout.kind, payout.reference, payout.balance_fen) == (LineKind.DEBIT, "PAY1", 42_345)
    assert (split.account, split.business, split.occurred_at) == (
        B,
        "SPLIT_IN",
        NOON + timedelta(hours=2),
    )
    assert statement.closing_balances == (
        ClosingBalance(5, A, 42_345),
        ClosingBalance(6, B, 300),
        ClosingBalance(7, C, 7),
    )
    assert statement.totals == Totals(count=3, amount_fen=12_645, refund_fen=20_000, fee_fen=0)


def test_the_file_is_named_as_the_bank_names_it() -> None:
    assert file_name("APP1", DAY) == bank_file.file_name("APP1", DAY) == "FUNDS_APP1_20261130.txt"


def test_injected_differences_keep_the_file_consistent_with_itself() -> None:
    data = good(
        [
            Discrepancy(kind="drop", reference="R1"),
            Discrepancy(kind="add", account=C, amount_fen=99, reference="X1"),
            Discrepancy(kind="amount", reference="PAY1", amount_fen=20_001),
            Discrepancy(kind="duplicate", reference="SPL1"),
            Discrepancy(kind="fee", reference="PAY1", fee_fen=5),
            Discrepancy(kind="status", reference="SPL1", status="REVERSED"),
        ]
    )
    statement = parse_bank_file(data, DAY)
    assert [(line.reference, line.amount_fen, line.status) for line in statement.lines] == [
        ("PAY1", 20_001, "SUCCESS"),
        ("SPL1", 300, "REVERSED"),
        ("SPL1", 300, "SUCCESS"),
        ("X1", 99, "SUCCESS"),
    ]
    assert {b.account: b.balance_fen for b in statement.closing_balances} == {
        A: 29_999, B: 600, C: 106,
    }  # fmt: skip
    assert statement.totals.fee_fen == 5


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [(5, "12.34", "amount"), (5, "", "amount"), (5, "0", "amount: 0"), (5, "-5", "amount"),
     (6, "x", "fee"), (7, "1e3", "balance"), (4, "X", "direction"), (8, "RMB", "currency"),
     (9, "GIFT", "business_type"), (14, "OK", "status"), (13, "2026-12-01 00:00:00", "not on"),
     (1, "2", "seq"), (10, "", "empty")],
)  # fmt: skip
def test_a_bad_field_refuses_the_file_naming_its_line(field: int, value: str, why: str) -> None:
    rows = lines()
    values = rows[1].split("|")
    values[field] = value
    rows[1] = "|".join(values)
    error = refused(joined(rows))
    assert error.line_no == 2 and why in error.reason


def test_a_missing_column_is_refused() -> None:
    rows = lines()
    rows[2] = rows[2].rsplit("|", 1)[0]
    error = refused(joined(rows))
    assert (error.line_no, error.reason) == (3, "15 fields, a D record has 16")


def test_a_balance_that_does_not_follow_from_the_previous_one_is_refused() -> None:
    rows = lines()
    values = rows[2].split("|")
    values[7] = str(int(values[7]) + 1)
    rows[2] = "|".join(values)
    error = refused(joined(rows))
    assert error.line_no == 3 and "where the account held 62345" in error.reason


def test_a_closing_balance_other_than_the_lines_say_is_refused() -> None:
    rows = lines()
    values = rows[4].split("|")
    values[5] = "42346"
    rows[4] = "|".join(values)
    assert refused(joined(rows)).line_no == 5


@pytest.mark.parametrize(
    ("field", "value"),
    [(1, "4"), (2, "3"), (3, "12646"), (4, "0"), (5, "19999"), (6, "1"), (7, "2"), (8, "1")],
)
def test_a_wrong_control_total_in_the_trailer_is_refused(field: int, value: str) -> None:
    rows = lines()
    values = rows[-2].split("|")
    values[field] = value
    rows[-2] = "|".join(values)
    error = refused(joined(rows))
    assert error.line_no == 8 and "control total" in error.reason


def test_no_trailer_is_a_truncated_file() -> None:
    rows = lines()[:-2]
    assert refused(joined(rows)).reason == "no trailer record (T): a truncated file"


def test_an_account_without_its_balance_record_is_refused() -> None:
    rows = lines()
    del rows[5]
    rows[5] = rows[5].replace("B|3|", "B|2|")
    assert "no B record for account 6222020000000002" in refused(joined(rows)).reason


def test_a_file_of_another_day_is_refused() -> None:
    with pytest.raises(StatementRejected) as caught:
        parse_bank_file(good(), DAY + timedelta(days=1))
    assert caught.value.line_no == 1


def test_utf8_where_gbk_is_expected_is_refused_with_its_line() -> None:
    data = good().decode("gbk").encode("utf-8")
    error = refused(data)
    assert error.line_no == 2 and "not gbk" in error.reason


def test_a_second_header_is_refused() -> None:
    rows = lines()
    rows.insert(2, rows[0])
    assert refused(joined(rows)).line_no == 3


def _chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 3, 64, 1 << 20])
def test_read_in_chunks_of_any_size_it_is_the_same_file(size: int) -> None:
    stream = bank_file.stream_bank_file(_chunked(good(), size), DAY, "FUNDS.txt")
    assert stream.whole() == parse_bank_file(good(), DAY, "FUNDS.txt")
    assert stream.merchant == "APP1"  # the header's app id


def test_lines_are_given_as_read_and_a_wrong_trailer_refuses_at_the_end() -> None:
    rows = lines()
    rows[-2] = rows[-2].replace("T|3|", "T|4|", 1)
    stream = bank_file.stream_bank_file(_chunked(joined(rows), 7), DAY, "FUNDS.txt")
    given = []
    with pytest.raises(StatementRejected) as caught:
        for line in stream.lines:
            given.append(line)
    assert len(given) == 3 and "control total detail_count 4" in caught.value.reason
    assert stream.totals is None


def test_a_file_cut_inside_a_line_or_garbled_later_on_is_refused_with_its_line() -> None:
    data = good()
    cut = data[: data.index(b"\r\nB|") - 5]  # inside the last D record
    error = refused(cut)
    assert error.line_no == 4 and "fields" in error.reason
    at = data.index(b"PAY1")
    garbled = data[:at] + b"\xff" + data[at + 1 :]
    with pytest.raises(StatementRejected) as caught:
        bank_file.stream_bank_file(_chunked(garbled, 16), DAY, "FUNDS.txt").whole()
    assert (caught.value.line_no, caught.value.reason) == (3, "not gbk text")


def test_a_line_without_end_is_refused_before_it_fills_memory() -> None:
    endless = lines()[0].encode() + b"\r\nD|" + b"9" * 200_000
    with pytest.raises(StatementRejected) as caught:
        bank_file.stream_bank_file(_chunked(endless, 4096), DAY, "FUNDS.txt").whole()
    assert caught.value.line_no == 2 and "longer than" in caught.value.reason
