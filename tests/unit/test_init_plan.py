"""What an import does against what is held: new rows created, equal rows left alone, changed
rows reported (never applied), unfinished registrations resumed; opening balances as balanced
entries against the equity account, an unknown or inactive merchant refusing the file whole."""

from __future__ import annotations

import pytest
from support.init_files import balances_file, merchants_file

from fundhub.ledger.rules import Bucket, new_entry_id, totals_by_currency
from fundhub.merchants.states import MerchantState
from fundhub.reconciliation.initialisation.files import FileRefused, read_balances, read_merchants
from fundhub.reconciliation.initialisation.plan import (
    BalanceTarget,
    HeldMerchant,
    equity_account,
    plan_balances,
    plan_merchants,
)


def test_merchants_are_created_kept_resumed_or_reported() -> None:
    file = read_merchants(merchants_file(["NEW", "SAME", "HALF", "OTHER"]))
    fingerprint = {row.merchant_no: row.registration.fingerprint() for row in file.rows}
    held = {
        "SAME": HeldMerchant("mch_1", fingerprint["SAME"], MerchantState.ACTIVE, None),
        "HALF": HeldMerchant("mch_2", fingerprint["HALF"], MerchantState.PENDING_REVIEW, "mrq_2"),
        "OTHER": HeldMerchant("mch_3", "f" * 64, MerchantState.ACTIVE, None),
    }
    plan = plan_merchants(file, held)
    assert [r.merchant_no for r in plan.create] == ["NEW"]
    assert [r.merchant_no for r in plan.unchanged] == ["SAME"]
    assert [(r.merchant_no, m, q) for r, m, q in plan.resume] == [("HALF", "mch_2", "mrq_2")]
    assert [(c.line, c.merchant_no) for c in plan.conflicts] == [(5, "OTHER")]
    assert "not changed" in plan.conflicts[0].message


def target(merchant_id: str, state: MerchantState = MerchantState.ACTIVE) -> BalanceTarget:
    return BalanceTarget(merchant_id, "mac_" + merchant_id, state)


def ids(n: int) -> list[str]:
    return [new_entry_id() for _ in range(n)]


def test_opening_balances_are_balanced_entries_against_the_equity_account() -> None:
    file = read_balances(balances_file([("A", 10_000), ("B", 1), ("C", 0)]))
    plan = plan_balances(file, {"A": target("a"), "B": target("b"), "C": target("c")}, {}, ids(3))
    assert plan.amount_fen == 10_001
    entries = [o.entry for o in plan.post]
    assert entries[2] is None  # a zero balance is recorded, nothing posted
    for opening in plan.post[:2]:
        entry = opening.entry
        assert entry is not None and entry.ref_id == opening.target.merchant_id
        assert totals_by_currency(entry.postings) == {"CNY": 0}
        by_account = {p.account_id: (p.bucket, p.amount) for p in entry.postings}
        assert by_account == {
            opening.target.account_id: (Bucket.AVAILABLE, opening.row.amount_fen),
            equity_account("CNY"): (Bucket.AVAILABLE, -opening.row.amount_fen),
        }


def test_a_booked_balance_is_unchanged_or_a_conflict_never_booked_twice() -> None:
    file = read_balances(balances_file([("A", 500), ("B", 700), ("C", 900)]))
    targets = {"A": target("a"), "B": target("b"), "C": target("c")}
    plan = plan_balances(file, targets, {"A": 500, "B": 650}, ids(3))
    assert [o.row.merchant_no for o in plan.post] == ["C"]
    assert [r.merchant_no for r in plan.unchanged] == ["A"]
    assert [(c.line, c.merchant_no) for c in plan.conflicts] == [(3, "B")]
    assert "6.50" in plan.conflicts[0].message and "7.00" in plan.conflicts[0].message
    assert plan.amount_fen == 900


def test_unknown_merchant_in_balances_refuses_the_file_whole() -> None:
    file = read_balances(balances_file([("A", 500), ("GHOST", 700)]))
    with pytest.raises(FileRefused) as caught:
        plan_balances(file, {"A": target("a")}, {}, ids(2))
    assert caught.value.count == 1
    problem = caught.value.problems[0]
    assert (problem.line, problem.field) == (
        3,
        "merchantNo",
    ) and "no such merchant" in problem.message


@pytest.mark.parametrize(
    "state", [MerchantState.PENDING_REVIEW, MerchantState.REJECTED, MerchantState.CLOSED]
)
def test_a_merchant_that_holds_no_funds_refuses_the_file(state: MerchantState) -> None:
    file = read_balances(balances_file([("A", 500)]))
    with pytest.raises(FileRefused) as caught:
        plan_balances(file, {"A": target("a", state)}, {}, ids(1))
    assert state.value in caught.value.problems[0].message


def test_an_opening_balance_for_an_account_that_moved_money_refuses_the_file() -> None:
    file = read_balances(balances_file([("A", 500), ("B", 700)]))
    targets = {"A": target("a"), "B": target("b")}
    with pytest.raises(FileRefused) as caught:
        plan_balances(file, targets, {}, ids(2), moved={"mac_b"})
    assert caught.value.problems[0].line == 3 and "moved money" in caught.value.problems[0].message
    # Its own opening balance, booked before, is no reason: the rerun changes nothing.
    plan = plan_balances(file, targets, {"B": 700}, ids(2), moved={"mac_b"})
    assert [o.row.merchant_no for o in plan.post] == ["A"]
    assert [r.merchant_no for r in plan.unchanged] == ["B"]
