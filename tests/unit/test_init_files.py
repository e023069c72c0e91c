"""The data initialisation files: every refusal names its line (and column), a file with any
problem is refused whole, and the trailer's control totals must match to the row and the fen."""

from __future__ import annotations

import pytest
from support.init_files import (
    MERCHANT_HEADER,
    balances_file,
    csv_text,
    merchant_row,
    merchants_file,
)

from fundhub.reconciliation.initialisation.files import (
    MAX_REPORTED,
    FileRefused,
    Problem,
    read_balances,
    read_merchants,
)


def refused(read: object, data: bytes) -> FileRefused:
    with pytest.raises(FileRefused) as caught:
        read(data)  # type: ignore[operator]
    return caught.value


def only(refusal: FileRefused) -> Problem:
    assert refusal.count == 1, refusal.problems
    return refusal.problems[0]


# --- merchants ----------------------------------------------------------------------------------


def test_a_good_merchants_file_reads_every_row_with_its_line() -> None:
    file = read_merchants(merchants_file(["M1", "M2", "M3"]))
    assert [(r.line, r.merchant_no) for r in file.rows] == [(2, "M1"), (3, "M2"), (4, "M3")]
    assert file.trailer.line == 5 and file.trailer.count == 3
    enterprise, individual = file.rows[0].registration, file.rows[1].registration
    assert enterprise.type == "ENTERPRISE" and enterprise.licence is not None
    assert individual.type == "INDIVIDUAL" and individual.licence is None
    assert individual.contact.email is None  # an empty optional cell is absent


def test_a_bom_and_blank_lines_at_the_end_are_accepted() -> None:
    data = b"\xef\xbb\xbf" + merchants_file(["M1"]) + b"\n\n"
    assert [r.merchant_no for r in read_merchants(data).rows] == ["M1"]


def test_the_same_row_gives_the_same_fingerprint_as_the_api() -> None:
    one = read_merchants(merchants_file(["M1"])).rows[0].registration
    again = read_merchants(merchants_file(["M1"])).rows[0].registration
    assert one.fingerprint() == again.fingerprint()


def test_missing_column_is_refused_on_the_header_line() -> None:
    header = [c for c in MERCHANT_HEADER if c != "contactPhone"]
    rows = [
        [v for c, v in zip(MERCHANT_HEADER, merchant_row("M1"), strict=True) if c != "contactPhone"]
    ]
    problem = only(refused(read_merchants, csv_text(header, rows, ["TRAILER", "1"])))
    assert (problem.line, problem.field, problem.message) == (1, "contactPhone", "missing column")


def test_unknown_column_is_refused() -> None:
    data = csv_text([*MERCHANT_HEADER, "vip"], [[*merchant_row("M1"), "y"]], ["TRAILER", "1"])
    problem = only(refused(read_merchants, data))
    assert (problem.line, problem.field) == (1, "vip")


def test_bad_identity_number_names_the_line_and_the_column() -> None:
    row = merchant_row("M2")
    row[5] = "110101199003074570"  # wrong check character
    data = csv_text(MERCHANT_HEADER, [merchant_row("M1"), row], ["TRAILER", "2"])
    problem = only(refused(read_merchants, data))
    assert (problem.line, problem.field) == (3, "legalPersonIdNumber")


def test_an_enterprise_without_licence_is_refused() -> None:
    row = merchant_row("M1")
    row[6] = row[7] = ""
    problem = only(refused(read_merchants, csv_text(MERCHANT_HEADER, [row], ["TRAILER", "1"])))
    assert (problem.line, problem.field) == (2, "licenceNo")


def test_duplicate_merchant_no_names_both_lines() -> None:
    problem = only(refused(read_merchants, merchants_file(["M1", "M2", "M1"])))
    assert (problem.line, problem.field) == (4, "merchantNo")
    assert "first on line 2" in problem.message


def test_wrong_trailer_count_refuses_the_file() -> None:
    problem = only(refused(read_merchants, merchants_file(["M1", "M2"], count=3)))
    assert (problem.line, problem.field) == (4, "TRAILER")
    assert "2 rows" in problem.message and "3" in problem.message


def test_a_file_without_trailer_is_taken_as_cut_short() -> None:
    data = merchants_file(["M1", "M2"]).rsplit(b"TRAILER", 1)[0]
    problem = only(refused(read_merchants, data))
    assert problem.field == "TRAILER" and "cut short" in problem.message


def test_rows_after_the_trailer_are_refused() -> None:
    data = merchants_file(["M1"]) + b"M9,x\n"
    problems = refused(read_merchants, data).problems
    assert any(p.field == "TRAILER" and "last line" in p.message for p in problems)


def test_a_row_of_the_wrong_width_is_refused() -> None:
    data = csv_text(MERCHANT_HEADER, [merchant_row("M1")[:-1]], ["TRAILER", "1"])
    problem = only(refused(read_merchants, data))
    assert problem.line == 2 and "10 values for 11 columns" in problem.message


def test_not_utf8_names_the_line() -> None:
    data = merchants_file(["M1", "M2"]).replace("王五".encode(), "王五".encode("gbk"))
    problem = only(refused(read_merchants, data))
    assert problem.line == 3 and "UTF-8" in problem.message


def test_every_problem_is_counted_and_the_first_ones_reported() -> None:
    rows = [merchant_row(f"M{i}") for i in range(MAX_REPORTED + 20)]
    for row in rows:
        row[2] = "SHOP"
    data = csv_text(MERCHANT_HEADER, rows, ["TRAILER", str(len(rows))])
    refusal = refused(read_merchants, data)
    assert refusal.count == MAX_REPORTED + 20
    assert len(refusal.problems) == MAX_REPORTED
    assert [p.line for p in refusal.problems[:2]] == [2, 3]


def test_an_empty_file_is_refused() -> None:
    assert only(refused(read_merchants, b"")).message == "the file is empty"


# --- balances -----------------------------------------------------------------------------------


def test_a_good_balances_file_is_exact_to_the_fen() -> None:
    file = read_balances(balances_file([("M1", 123_456), ("M2", 0), ("M3", 29)]))
    assert [(r.line, r.merchant_no, r.amount_fen) for r in file.rows] == [
        (2, "M1", 123_456),
        (3, "M2", 0),
        (4, "M3", 29),
    ]
    assert file.amount_fen == file.trailer.amount_fen == 123_485


def test_rmb_is_read_as_cny() -> None:
    data = csv_text(
        ("merchantNo", "currency", "available"), [["M1", "RMB", "1.00"]], ["TRAILER", "1", "1.00"]
    )
    assert read_balances(data).rows[0].currency == "CNY"


@pytest.mark.parametrize("amount", ["12.345", "1e3", "12,00", "", " 1.00", "abc", "1.2.3"])
def test_bad_amount_is_refused_with_its_line(amount: str) -> None:
    rows = [["M1", "CNY", "1.00"], ["M2", "CNY", amount]]
    data = csv_text(("merchantNo", "currency", "available"), rows, ["TRAILER", "2", "1.00"])
    problem = only(refused(read_balances, data))
    assert (problem.line, problem.field) == (3, "available")


def test_negative_balance_is_refused() -> None:
    rows = [["M1", "CNY", "-5.00"]]
    data = csv_text(("merchantNo", "currency", "available"), rows, ["TRAILER", "1", "0.00"])
    problem = only(refused(read_balances, data))
    assert (problem.line, problem.field) == (2, "available") and "negative" in problem.message


def test_another_currency_is_refused() -> None:
    rows = [["M1", "USD", "5.00"]]
    data = csv_text(("merchantNo", "currency", "available"), rows, ["TRAILER", "1", "5.00"])
    assert only(refused(read_balances, data)).field == "currency"


def test_missing_balance_column_is_refused() -> None:
    data = csv_text(("merchantNo", "available"), [["M1", "5.00"]], ["TRAILER", "1", "5.00"])
    problem = only(refused(read_balances, data))
    assert (problem.line, problem.field, problem.message) == (1, "currency", "missing column")


def test_duplicate_merchant_in_balances_is_refused() -> None:
    problem = only(refused(read_balances, balances_file([("M1", 100), ("M1", 100)])))
    assert (problem.line, problem.field) == (3, "merchantNo")


def test_wrong_trailer_count_refuses_the_balances() -> None:
    problem = only(refused(read_balances, balances_file([("M1", 100)], count=2)))
    assert (problem.line, problem.field) == (3, "TRAILER")


def test_wrong_trailer_sum_refuses_the_balances_by_one_fen() -> None:
    problem = only(refused(read_balances, balances_file([("M1", 100), ("M2", 250)], total=351)))
    assert (problem.line, problem.field) == (4, "TRAILER")
    assert "3.50" in problem.message and "3.51" in problem.message


def test_a_trailer_without_its_sum_is_refused() -> None:
    data = csv_text(
        ("merchantNo", "currency", "available"), [["M1", "CNY", "1.00"]], ["TRAILER", "1"]
    )
    problem = only(refused(read_balances, data))
    assert problem.field == "TRAILER" and "<sum in yuan>" in problem.message


def test_a_bad_merchant_no_is_refused() -> None:
    data = balances_file([("M 1", 100)])
    assert only(refused(read_balances, data)).field == "merchantNo"


def test_quoted_values_with_commas_and_quotes_are_read_whole() -> None:
    file = read_merchants(merchants_file(["M1"], names={"M1": 'Acme, "the" shop'}))
    assert file.rows[0].registration.name == 'Acme, "the" shop'


def test_a_trailer_count_that_is_no_number_is_refused() -> None:
    data = csv_text(MERCHANT_HEADER, [merchant_row("M1")], ["TRAILER", "one"])
    problem = only(refused(read_merchants, data))
    assert (problem.line, problem.field) == (3, "TRAILER") and "not a number" in problem.message
