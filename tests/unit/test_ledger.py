"""Double-entry rules: entries balance per currency; balances never go negative unless allowed."""

from __future__ import annotations

import uuid

import pytest

from fundhub.ledger.rules import (
    BANK_INFLOW,
    DEDUCTION_CLEARING,
    Balance,
    Bucket,
    InsufficientFunds,
    JournalEntry,
    Posting,
    UnbalancedEntry,
    apply_entry,
    credit,
    debit,
    freeze,
    move,
    new_entry_id,
    system_account,
    totals_by_currency,
    unfreeze,
)

INFLOW = system_account(BANK_INFLOW, "CNY")


def entry(*postings: Posting) -> JournalEntry:
    return JournalEntry(
        entry_id=new_entry_id(), kind="test", ref_type="test", ref_id="r1", postings=postings
    )


def test_system_account_names() -> None:
    assert system_account(BANK_INFLOW, "CNY") == "sys:bank-inflow:CNY"
    assert system_account(DEDUCTION_CLEARING, "USD") == "sys:deduction-clearing:USD"


def test_bucket_values_match_the_schema() -> None:
    assert [b.value for b in Bucket] == ["available", "frozen", "pending"]


# --- postings and entries --------------------------------------------------------------------


@pytest.mark.parametrize("amount", [0, True, False, 1.0, "100"])
def test_posting_amount_must_be_a_non_zero_int(amount: object) -> None:
    with pytest.raises(ValueError):
        Posting("a", Bucket.AVAILABLE, "CNY", amount)  # type: ignore[arg-type]


def test_posting_bucket_from_text() -> None:
    assert Posting("a", "frozen", "CNY", 5).bucket is Bucket.FROZEN  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Posting("a", "elsewhere", "CNY", 5)  # type: ignore[arg-type]


def test_balanced_entry() -> None:
    made = entry(*credit("cust", "CNY", 100, source=INFLOW))
    assert totals_by_currency(made.postings) == {"CNY": 0}
    assert uuid.UUID(made.entry_id)


def test_entry_needs_postings() -> None:
    with pytest.raises(UnbalancedEntry):
        entry()


def test_unbalanced_entry() -> None:
    with pytest.raises(UnbalancedEntry):
        entry(
            Posting("a", Bucket.AVAILABLE, "CNY", 100), Posting("b", Bucket.AVAILABLE, "CNY", -99)
        )


def test_entry_balances_per_currency() -> None:
    entry(
        Posting("a", Bucket.AVAILABLE, "CNY", 100),
        Posting("b", Bucket.AVAILABLE, "CNY", -100),
        Posting("a", Bucket.AVAILABLE, "USD", 7),
        Posting("b", Bucket.AVAILABLE, "USD", -7),
    )
    with pytest.raises(UnbalancedEntry):
        # Sums to zero overall but not per currency.
        entry(
            Posting("a", Bucket.AVAILABLE, "CNY", 100), Posting("b", Bucket.AVAILABLE, "USD", -100)
        )


def test_entry_id_must_be_a_uuid() -> None:
    with pytest.raises(ValueError):
        JournalEntry(
            entry_id="e1",
            kind="k",
            ref_type="t",
            ref_id="r",
            postings=credit("a", "CNY", 1, source=INFLOW),
        )


def test_entry_is_immutable() -> None:
    made = entry(*credit("cust", "CNY", 100, source=INFLOW))
    with pytest.raises(AttributeError):
        made.kind = "other"  # type: ignore[misc]


# --- builders --------------------------------------------------------------------------------


def test_move_and_friends() -> None:
    assert move("a", Bucket.AVAILABLE, "b", Bucket.FROZEN, "CNY", 0) == ()
    with pytest.raises(ValueError):
        move("a", Bucket.AVAILABLE, "b", Bucket.FROZEN, "CNY", -1)
    assert credit("c", "CNY", 5, source=INFLOW) == (
        Posting(INFLOW, Bucket.AVAILABLE, "CNY", -5),
        Posting("c", Bucket.AVAILABLE, "CNY", 5),
    )
    assert debit("c", "CNY", 5, target="sink", bucket=Bucket.FROZEN) == (
        Posting("c", Bucket.FROZEN, "CNY", -5),
        Posting("sink", Bucket.AVAILABLE, "CNY", 5),
    )
    assert freeze("c", "CNY", 5) == (
        Posting("c", Bucket.AVAILABLE, "CNY", -5),
        Posting("c", Bucket.FROZEN, "CNY", 5),
    )
    assert unfreeze("c", "CNY", 5) == (
        Posting("c", Bucket.FROZEN, "CNY", -5),
        Posting("c", Bucket.AVAILABLE, "CNY", 5),
    )


# --- balances --------------------------------------------------------------------------------


def test_balance_total() -> None:
    assert Balance("a", "CNY", available=1, frozen=20, pending=300).total == 321


def test_apply_credit_skips_system_accounts() -> None:
    before = Balance("cust", "CNY", available=10)
    after = apply_entry({"cust": before}, entry(*credit("cust", "CNY", 100, source=INFLOW)))
    assert after == {"cust": Balance("cust", "CNY", available=110)}
    assert before.available == 10  # new objects, the input is untouched


def test_apply_only_returns_touched_accounts() -> None:
    balances = {"cust": Balance("cust", "CNY"), "other": Balance("other", "CNY", available=5)}
    after = apply_entry(balances, entry(*credit("cust", "CNY", 1, source=INFLOW)))
    assert set(after) == {"cust"}


def test_apply_between_two_customer_accounts() -> None:
    balances = {"a": Balance("a", "CNY", available=100), "b": Balance("b", "CNY")}
    after = apply_entry(
        balances, entry(*move("a", Bucket.AVAILABLE, "b", Bucket.PENDING, "CNY", 60))
    )
    assert after["a"].available == 40
    assert after["b"].pending == 60


def test_insufficient_funds() -> None:
    balances = {"cust": Balance("cust", "CNY", available=10, frozen=50)}
    with pytest.raises(InsufficientFunds) as info:
        apply_entry(balances, entry(*freeze("cust", "CNY", 11)))
    assert (info.value.account_id, info.value.bucket, info.value.needed, info.value.had) == (
        "cust",
        Bucket.AVAILABLE,
        11,
        10,
    )
    with pytest.raises(InsufficientFunds) as info:
        apply_entry(balances, entry(*debit("cust", "CNY", 51, target=INFLOW, bucket=Bucket.FROZEN)))
    assert info.value.bucket is Bucket.FROZEN


def test_exact_balance_can_be_spent() -> None:
    balances = {"cust": Balance("cust", "CNY", available=10)}
    after = apply_entry(balances, entry(*debit("cust", "CNY", 10, target=INFLOW)))
    assert after["cust"].available == 0


def test_allow_negative() -> None:
    balances = {"fee": Balance("fee", "CNY", allow_negative=True)}
    after = apply_entry(balances, entry(*debit("fee", "CNY", 10, target=INFLOW)))
    assert after["fee"].available == -10


def test_deltas_are_netted_within_an_entry() -> None:
    balances = {"cust": Balance("cust", "CNY", available=0)}
    made = entry(
        *credit("cust", "CNY", 100, source=INFLOW), *debit("cust", "CNY", 100, target=INFLOW)
    )
    assert apply_entry(balances, made)["cust"] == Balance("cust", "CNY")


def test_a_negative_bucket_may_improve() -> None:
    balances = {"cust": Balance("cust", "CNY", available=-50)}
    after = apply_entry(balances, entry(*credit("cust", "CNY", 20, source=INFLOW)))
    assert after["cust"].available == -30


def test_currency_mismatch() -> None:
    balances = {"cust": Balance("cust", "USD", available=100)}
    with pytest.raises(ValueError, match="held in USD"):
        apply_entry(balances, entry(*credit("cust", "CNY", 1, source=INFLOW)))
