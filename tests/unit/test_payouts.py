"""A payout moves forward only, whatever the bank reports and in whatever order; money is kept."""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import pytest

from fundhub.common.clock import BANK_TZ
from fundhub.ledger.rules import (
    Balance,
    Bucket,
    JournalEntry,
    apply_entry,
    new_entry_id,
    totals_by_currency,
)
from fundhub.payouts.bank import BankStatus
from fundhub.payouts.bank_results import BankResult, InvalidBankResult, parse_bank_result
from fundhub.payouts.states import (
    BANK_REJECTED,
    INSUFFICIENT_FUNDS,
    INVALID_PARAMETER,
    PAYEE_INVALID,
    RETURNED,
    TIMEOUT,
    Payout,
    PayoutState,
    Transition,
    accept,
    clearing_account,
    failure_code,
    settle,
    time_out,
)

PAYER = "6222020000000001"
PAY_ID = "PAY202506010000000001"
AMOUNT = 1_000
CLEARING = clearing_account("CNY")


def payer(available: int = 10_000, frozen: int = 0, currency: str = "CNY") -> Balance:
    return Balance(PAYER, currency, available=available, frozen=frozen)


def processing(amount: int = AMOUNT, bank_txn_id: str | None = None) -> Payout:
    return Payout(PAY_ID, PAYER, "CNY", amount, PayoutState.PROCESSING, bank_txn_id=bank_txn_id)


def report(
    status: BankStatus | str,
    amount: int | None = AMOUNT,
    bank_txn_id: str | None = "BT1",
    reason: str | None = None,
    bank_request_id: str | None = PAY_ID,
) -> BankResult:
    return BankResult(
        status=BankStatus(status),
        bank_txn_id=bank_txn_id,
        reason=reason,
        amount=amount,
        bank_request_id=bank_request_id,
    )


def postings_of(entry: JournalEntry | None) -> set[tuple[str, Bucket, int]]:
    assert entry is not None
    assert totals_by_currency(entry.postings) == {"CNY": 0}
    assert (entry.kind, entry.ref_type, entry.ref_id) == ("payout", "payout", PAY_ID)
    return {(p.account_id, p.bucket, p.amount) for p in entry.postings}


def settled(payout: Payout, *statuses: BankStatus | str) -> Payout:
    """The payout after applied reports, asserting each one applied."""
    for status in statuses:
        transition = settle(payout, report(status), new_entry_id())
        assert transition.outcome == "applied", transition.note
        assert transition.payout is not None
        payout = transition.payout
    return payout


# --- accept ----------------------------------------------------------------------------------


def test_accept_freezes_the_amount() -> None:
    transition = accept(PAY_ID, payer(), AMOUNT, "CNY", new_entry_id())
    assert transition.outcome == "applied"
    assert transition.payout == processing()
    assert postings_of(transition.entry) == {
        (PAYER, Bucket.AVAILABLE, -AMOUNT),
        (PAYER, Bucket.FROZEN, AMOUNT),
    }
    assert transition.entry is not None
    after = apply_entry({PAYER: payer()}, transition.entry)[PAYER]
    assert (after.available, after.frozen) == (10_000 - AMOUNT, AMOUNT)


def test_accept_the_whole_available_balance() -> None:
    transition = accept(PAY_ID, payer(available=AMOUNT), AMOUNT, "CNY", new_entry_id())
    assert transition.payout is not None
    assert transition.payout.state is PayoutState.PROCESSING


def test_accept_without_enough_available_fails_and_posts_nothing() -> None:
    transition = accept(
        PAY_ID, payer(available=AMOUNT - 1, frozen=5_000), AMOUNT, "CNY", new_entry_id()
    )
    assert transition.outcome == "applied"
    assert transition.entry is None
    assert transition.payout == replace(
        processing(),
        state=PayoutState.FAILED,
        error_code=INSUFFICIENT_FUNDS,
        message="available balance is insufficient",
    )
    assert INSUFFICIENT_FUNDS == "E004_INSUFFICIENT_FUNDS"


def test_accept_in_another_currency_fails_and_posts_nothing() -> None:
    transition = accept(PAY_ID, payer(currency="USD"), AMOUNT, "CNY", new_entry_id())
    assert transition.entry is None
    assert transition.payout is not None
    assert transition.payout.state is PayoutState.FAILED
    assert transition.payout.error_code == INVALID_PARAMETER == "E001"
    assert transition.payout.message == "currency does not match the payer account"


@pytest.mark.parametrize("amount", [0, -5, True])
def test_a_payout_amount_is_positive(amount: Any) -> None:
    with pytest.raises(ValueError):
        accept(PAY_ID, payer(), amount, "CNY", new_entry_id())


# --- settle: the forward moves ---------------------------------------------------------------


def test_success_sends_the_frozen_amount_to_clearing() -> None:
    transition = settle(processing(), report("SUCCESS"), new_entry_id())
    assert transition.outcome == "applied"
    assert transition.payout == replace(processing(), state=PayoutState.SUCCESS, bank_txn_id="BT1")
    assert postings_of(transition.entry) == {
        (PAYER, Bucket.FROZEN, -AMOUNT),
        (CLEARING, Bucket.AVAILABLE, AMOUNT),
    }
    assert CLEARING == "sys:bank-payout-clearing:CNY"


def test_failure_releases_the_frozen_amount() -> None:
    transition = settle(
        processing(), report("FAILED", reason="daily limit exceeded"), new_entry_id()
    )
    assert transition.payout == replace(
        processing(),
        state=PayoutState.FAILED,
        error_code=BANK_REJECTED,
        message="daily limit exceeded",
        bank_txn_id="BT1",
    )
    assert postings_of(transition.entry) == {
        (PAYER, Bucket.FROZEN, -AMOUNT),
        (PAYER, Bucket.AVAILABLE, AMOUNT),
    }


def test_failure_without_a_reason() -> None:
    transition = settle(processing(), report("FAILED"), new_entry_id())
    assert transition.payout is not None
    assert transition.payout.error_code == BANK_REJECTED == "E015_BANK_REJECTED"
    assert transition.payout.message == "the bank refused the payout"


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("payee account closed", PAYEE_INVALID),
        ("Payee account number invalid", PAYEE_INVALID),
        ("收款账户不存在", PAYEE_INVALID),
        ("insufficient funds at the bank", BANK_REJECTED),
        ("", BANK_REJECTED),
        (None, BANK_REJECTED),
    ],
)
def test_failure_codes(reason: str | None, code: str) -> None:
    assert failure_code(reason) == code
    transition = settle(processing(), report("FAILED", reason=reason), new_entry_id())
    assert transition.payout is not None
    assert transition.payout.error_code == code


def test_a_paid_payout_returned_by_the_bank() -> None:
    paid = settled(processing(), "SUCCESS")
    transition = settle(paid, report("RETURNED", reason="payee refused"), new_entry_id())
    assert transition.outcome == "applied"
    assert transition.payout == replace(
        paid, state=PayoutState.RETURNED, error_code=RETURNED, message="payee refused"
    )
    assert RETURNED == "E014_RETURNED"
    assert postings_of(transition.entry) == {
        (CLEARING, Bucket.AVAILABLE, -AMOUNT),
        (PAYER, Bucket.AVAILABLE, AMOUNT),
    }


def test_returned_before_success_posts_both_steps() -> None:
    """The SUCCESS report is late or lost; the RETURNED one is the bank's last word."""
    transition = settle(processing(), report("RETURNED"), new_entry_id())
    assert transition.outcome == "applied"
    assert transition.payout is not None
    assert transition.payout.state is PayoutState.RETURNED
    assert transition.payout.message == "the bank returned the payout"
    assert transition.entry is not None
    after = apply_entry({PAYER: payer(available=0, frozen=AMOUNT)}, transition.entry)[PAYER]
    assert (after.available, after.frozen) == (AMOUNT, 0)
    clearing = [p.amount for p in transition.entry.postings if p.account_id == CLEARING]
    assert sorted(clearing) == [-AMOUNT, AMOUNT]  # paid out, and back
    late_success = settle(transition.payout, report("SUCCESS"), new_entry_id())
    assert (late_success.outcome, late_success.alert) == ("stale", False)


def test_processing_notes_the_bank_txn_id_once() -> None:
    first = settle(processing(), report("PROCESSING"), new_entry_id())
    assert first.outcome == "applied"
    assert first.entry is None
    assert first.payout == processing(bank_txn_id="BT1")
    again = settle(processing(bank_txn_id="BT1"), report("PROCESSING"), new_entry_id())
    assert (again.outcome, again.payout, again.entry) == ("stale", None, None)
    no_txn = settle(processing(), report("PROCESSING", bank_txn_id=None), new_entry_id())
    assert no_txn.outcome == "stale"


def test_a_report_without_an_amount_is_accepted() -> None:
    transition = settle(processing(), report("SUCCESS", amount=None), new_entry_id())
    assert transition.outcome == "applied"


# --- settle: duplicates, late and contradicting reports ---------------------------------------

STATES_AFTER = {
    PayoutState.SUCCESS: ("SUCCESS",),
    PayoutState.FAILED: ("FAILED",),
    PayoutState.RETURNED: ("SUCCESS", "RETURNED"),
}


@pytest.mark.parametrize(
    ("state", "status", "alert"),
    [
        (PayoutState.SUCCESS, "SUCCESS", False),  # duplicate
        (PayoutState.SUCCESS, "PROCESSING", False),  # late
        (PayoutState.SUCCESS, "FAILED", True),  # contradiction
        (PayoutState.FAILED, "FAILED", False),
        (PayoutState.FAILED, "PROCESSING", False),
        (PayoutState.FAILED, "SUCCESS", True),
        (PayoutState.FAILED, "RETURNED", True),
        (PayoutState.RETURNED, "RETURNED", False),
        (PayoutState.RETURNED, "SUCCESS", False),
        (PayoutState.RETURNED, "PROCESSING", False),
        (PayoutState.RETURNED, "FAILED", True),
    ],
)
def test_reports_that_do_not_move_a_final_payout(
    state: PayoutState, status: str, alert: bool
) -> None:
    payout = settled(processing(), *STATES_AFTER[state])
    assert payout.state is state
    transition = settle(payout, report(status), new_entry_id())
    assert transition.outcome == "stale"
    assert (transition.payout, transition.entry) == (None, None)
    assert transition.alert is alert
    assert f"{status} for a payout {state}" in transition.note


def test_success_after_a_time_out_is_a_contradiction() -> None:
    failed = time_out(processing(), new_entry_id()).payout
    assert failed is not None
    transition = settle(failed, report("SUCCESS"), new_entry_id())
    assert (transition.outcome, transition.alert, transition.entry) == ("stale", True, None)


@pytest.mark.parametrize(
    ("result", "problem"),
    [
        (report("SUCCESS", amount=AMOUNT + 1), "amount 1001 != 1000"),
        (report("FAILED", amount=1), "amount 1 != 1000"),
        (report("SUCCESS", bank_request_id="PAY202506010000000002"), "bank_request_id"),
        (report("SUCCESS", bank_txn_id="BT-other"), "bank_txn_id BT-other != BT1"),
    ],
)
def test_reports_about_something_else_are_rejected(result: BankResult, problem: str) -> None:
    for payout in (processing(bank_txn_id="BT1"), settled(processing(), "SUCCESS")):
        transition = settle(payout, result, new_entry_id())
        assert (transition.outcome, transition.payout, transition.entry) == ("rejected", None, None)
        assert transition.alert
        assert problem in transition.note


# --- time_out --------------------------------------------------------------------------------


def test_time_out_fails_and_releases() -> None:
    transition = time_out(processing(bank_txn_id="BT1"), new_entry_id())
    assert transition.outcome == "applied"
    assert transition.payout == replace(
        processing(bank_txn_id="BT1"),
        state=PayoutState.FAILED,
        error_code=TIMEOUT,
        message="the bank never received the payout",
    )
    assert TIMEOUT == "E003_TIMEOUT"
    assert postings_of(transition.entry) == {
        (PAYER, Bucket.FROZEN, -AMOUNT),
        (PAYER, Bucket.AVAILABLE, AMOUNT),
    }


@pytest.mark.parametrize("statuses", [("SUCCESS",), ("FAILED",), ("SUCCESS", "RETURNED")])
def test_time_out_of_a_final_payout_is_stale(statuses: tuple[str, ...]) -> None:
    transition = time_out(settled(processing(), *statuses), new_entry_id())
    assert (transition.outcome, transition.payout, transition.entry) == ("stale", None, None)


def test_wire_codes_of_the_states() -> None:
    assert [state.biz_code for state in PayoutState] == [
        "PROCESSING",
        "SUCCESS",
        "FAILED",
        "FAILED",
    ]
    assert [state.is_final for state in PayoutState] == [False, True, True, True]


# --- money is conserved over any sequence of events ------------------------------------------


@dataclass
class World:
    """One payer account, the clearing account and the payouts on them."""

    balance: Balance
    initial: int
    clearing: int = 0
    payouts: dict[str, Payout] = field(default_factory=dict)
    entries: list[JournalEntry] = field(default_factory=list)

    def apply(self, transition: Transition) -> None:
        if transition.outcome != "applied":
            assert transition.payout is None and transition.entry is None
            return
        assert transition.payout is not None
        if transition.entry is not None:
            entry = transition.entry
            assert totals_by_currency(entry.postings) == {"CNY": 0}
            assert entry.ref_id == transition.payout.pay_id
            # apply_entry raises InsufficientFunds rather than let a payer bucket go negative.
            self.balance = apply_entry({PAYER: self.balance}, entry)[PAYER]
            self.clearing += sum(p.amount for p in entry.postings if p.account_id == CLEARING)
            self.entries.append(entry)
        self.payouts[transition.payout.pay_id] = transition.payout
        self.check()

    def check(self) -> None:
        assert min(self.balance.available, self.balance.frozen, self.clearing) >= 0
        assert self.balance.available + self.balance.frozen + self.clearing == self.initial
        by_state = {state: 0 for state in PayoutState}
        for payout in self.payouts.values():
            by_state[payout.state] += payout.amount
        assert self.balance.frozen == by_state[PayoutState.PROCESSING]
        assert self.clearing == by_state[PayoutState.SUCCESS]


def random_report(rng: random.Random, payout: Payout) -> BankResult:
    amount: int | None = payout.amount
    if rng.random() < 0.1:
        amount = payout.amount + rng.choice([-1, 1])
    elif rng.random() < 0.2:
        amount = None
    bank_txn_id = payout.bank_txn_id or f"BT-{payout.pay_id}"
    if rng.random() < 0.05:
        bank_txn_id = "BT-other"
    return BankResult(
        status=rng.choice(list(BankStatus)),
        bank_txn_id=bank_txn_id,
        reason=rng.choice([None, "payee account closed", "limit exceeded"]),
        amount=amount,
        bank_request_id=payout.pay_id,
    )


@pytest.mark.parametrize("seed", range(200))
def test_money_is_conserved_over_random_events(seed: int) -> None:
    rng = random.Random(seed)
    initial = rng.randrange(0, 50_000)
    world = World(Balance(PAYER, "CNY", available=initial), initial)
    for step in range(rng.randrange(1, 120)):
        roll = rng.random()
        if roll < 0.25 or not world.payouts:
            pay_id = f"PAY20250601{step:010d}"
            amount = rng.randrange(1, 20_000)
            world.apply(accept(pay_id, world.balance, amount, "CNY", new_entry_id()))
            continue
        payout = world.payouts[rng.choice(sorted(world.payouts))]
        if roll < 0.3:
            world.apply(time_out(payout, new_entry_id()))
        else:
            world.apply(settle(payout, random_report(rng, payout), new_entry_id()))
    assert len({entry.entry_id for entry in world.entries}) == len(world.entries)


@pytest.mark.parametrize("seed", range(100))
def test_any_order_of_the_banks_reports_ends_in_its_last_word(seed: int) -> None:
    """Duplicated and shuffled reports of one bank story always end in the same state."""
    rng = random.Random(seed)
    world = World(Balance(PAYER, "CNY", available=100_000), 100_000)
    stories = {
        "SUCCESS": (["SUCCESS"], PayoutState.SUCCESS),
        "FAILED": (["FAILED"], PayoutState.FAILED),
        "RETURNED": (["SUCCESS", "RETURNED"], PayoutState.RETURNED),
    }
    expected: dict[str, PayoutState] = {}
    pending: list[tuple[str, str]] = []
    for index in range(20):
        pay_id = f"PAY20250601{index:010d}"
        world.apply(accept(pay_id, world.balance, rng.randrange(1, 5_000), "CNY", new_entry_id()))
        reports, final = stories[rng.choice(sorted(stories))]
        expected[pay_id] = final
        for status in ["PROCESSING", *reports]:
            pending.extend([(pay_id, status)] * rng.randint(1, 3))
    rng.shuffle(pending)
    for pay_id, status in pending:
        payout = world.payouts[pay_id]
        result = BankResult(BankStatus(status), f"BT-{pay_id}", None, payout.amount, pay_id)
        transition = settle(payout, result, new_entry_id())
        assert not transition.alert, transition.note
        world.apply(transition)
    assert {pay_id: p.state for pay_id, p in world.payouts.items()} == expected
    assert world.balance.frozen == 0


# --- the bank's result notification ----------------------------------------------------------

BIZ = {
    "bank_request_id": PAY_ID,
    "bank_txn_id": "BT20250601000001",
    "status": "SUCCESS",
    "reason": "",
    "amount": "1000",
    "finished_time": "2025-06-01 15:20:33",
    "bank_extra_field": "ignored",
}


def test_parse_bank_result() -> None:
    result = parse_bank_result(BIZ)
    assert result == BankResult(
        status=BankStatus.SUCCESS,
        bank_txn_id="BT20250601000001",
        reason=None,
        amount=1000,
        bank_request_id=PAY_ID,
        finished_time=datetime(2025, 6, 1, 15, 20, 33, tzinfo=BANK_TZ),
    )
    failed = parse_bank_result({**BIZ, "status": "FAILED", "reason": "payee account closed"})
    assert (failed.status, failed.reason) == (BankStatus.FAILED, "payee account closed")
    processing_result = parse_bank_result({**BIZ, "status": "PROCESSING", "finished_time": None})
    assert processing_result.finished_time is None


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"bank_request_id": None}, "biz_content.bank_request_id: missing"),
        ({"bank_request_id": ""}, "biz_content.bank_request_id: missing"),
        ({"bank_request_id": 12}, "biz_content.bank_request_id: not a string"),
        ({"bank_request_id": "P" * 65}, "biz_content.bank_request_id: longer than 64 characters"),
        ({"bank_txn_id": None}, "biz_content.bank_txn_id: missing"),
        (
            {"status": "DONE"},
            "biz_content.status: not one of PROCESSING, SUCCESS, FAILED, RETURNED",
        ),
        (
            {"status": "success"},
            "biz_content.status: not one of PROCESSING, SUCCESS, FAILED, RETURNED",
        ),
        ({"status": None}, "biz_content.status: missing"),
        ({"reason": 5}, "biz_content.reason: not a string"),
        ({"reason": "r" * 257}, "biz_content.reason: longer than 256 characters"),
        ({"amount": None}, "biz_content.amount: missing"),
        ({"amount": 1000}, "biz_content.amount: not a string"),
        ({"amount": "0"}, "biz_content.amount: not a positive integer amount of fen"),
        ({"amount": "-1"}, "biz_content.amount: not a positive integer amount of fen"),
        ({"amount": "10.00"}, "biz_content.amount: not a positive integer amount of fen"),
        ({"amount": "0100"}, "biz_content.amount: not a positive integer amount of fen"),
        ({"amount": "1" * 17}, "biz_content.amount: longer than 16 characters"),
        ({"finished_time": None}, "biz_content.finished_time: missing"),
        (
            {"finished_time": "2025-06-01T15:20:33"},
            "biz_content.finished_time: expected yyyy-MM-dd HH:mm:ss",
        ),
        (
            {"finished_time": "2025-13-01 15:20:33"},
            "biz_content.finished_time: expected yyyy-MM-dd HH:mm:ss",
        ),
    ],
)
def test_parse_bank_result_names_the_bad_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidBankResult) as caught:
        parse_bank_result({**BIZ, **changes})
    assert str(caught.value) == message
    assert isinstance(caught.value, ValueError)
