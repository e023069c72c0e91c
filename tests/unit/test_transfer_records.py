"""A transfer record only moves forward, whatever order the bank's notices arrive in."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from dataclasses import dataclass, field, replace

import pytest

from fundhub.bank_transfers.notification import TransferNotice, parse_transfer_biz_content
from fundhub.bank_transfers.records import (
    RANK,
    Decision,
    RecordPosition,
    RecordState,
    decide,
    target_state,
)
from fundhub.ledger.rules import (
    BANK_INFLOW,
    DEDUCTION_CLEARING,
    Balance,
    Bucket,
    JournalEntry,
    apply_entry,
    new_entry_id,
    system_account,
    totals_by_currency,
)

ACCOUNT = "acct-15489516846"
INFLOW = system_account(BANK_INFLOW, "CNY")
CLEARING = system_account(DEDUCTION_CLEARING, "CNY")
AMOUNT = 100_000

BASE_BIZ = {
    "channel": "02",
    "node_id": "00026713",
    "record_id": "1234",
    "trans_time": "2025-06-01 15:20:33",
    "channel_trade_no": "10000000001",
    "in_acct_name": "收款方账户户名",
    "in_acct_no": "15489516846",
    "trans_amount": str(AMOUNT),
    "ccy_code": "RMB",
    "bind_status": "1",
    "deduct_status": "0",
    "out_acct_name": "付款方账户名称",
    "out_acct_no": "624615616476846548",
    "host_flow_no": "300000000001",
    "host_tx_date": "2025-06-01",
    "reverse_flag": "0",
}


def notice(
    deduct_status: str = "0",
    reverse_flag: str = "0",
    amount: int = AMOUNT,
    record_id: str = "1234",
) -> TransferNotice:
    biz = {
        **BASE_BIZ,
        "deduct_status": deduct_status,
        "reverse_flag": reverse_flag,
        "trans_amount": str(amount),
        "record_id": record_id,
    }
    return parse_transfer_biz_content(json.dumps(biz))


@dataclass
class World:
    """One customer account, the records on it, and every posting made (system accounts too)."""

    balance: Balance = field(default_factory=lambda: Balance(ACCOUNT, "CNY"))
    records: dict[str, RecordPosition] = field(default_factory=dict)
    entries: list[JournalEntry] = field(default_factory=list)

    def receive(self, incoming: TransferNotice) -> Decision:
        decision = decide(
            self.records.get(incoming.record_id), incoming, self.balance, new_entry_id()
        )
        if decision.outcome == "stale":
            assert decision.position is None
            assert decision.entry is None
        if decision.entry is not None:
            assert totals_by_currency(decision.entry.postings) == {"CNY": 0}
            self.balance = apply_entry({ACCOUNT: self.balance}, decision.entry)[ACCOUNT]
            self.entries.append(decision.entry)
        if decision.position is not None:
            self.records[incoming.record_id] = decision.position
        return decision

    def system(self, account_id: str) -> int:
        return sum(p.amount for e in self.entries for p in e.postings if p.account_id == account_id)

    def buckets(self) -> tuple[int, int]:
        return self.balance.available, self.balance.frozen


def moved(decision: Decision) -> set[tuple[str, Bucket, int]]:
    """The (account, bucket, amount) of each posting of the decision's entry, which must exist."""
    assert decision.entry is not None
    return {(p.account_id, p.bucket, p.amount) for p in decision.entry.postings}


FRESH = notice("0")
HELD = notice("6")
DEDUCTED = notice("1")
REVERSED = notice("0", reverse_flag="1")
CORRECTION = notice("0", reverse_flag="2")


def test_target_states() -> None:
    assert target_state(FRESH) is RecordState.AVAILABLE
    assert target_state(HELD) is RecordState.FROZEN
    assert target_state(DEDUCTED) is RecordState.DEDUCTED
    assert target_state(notice("1", reverse_flag="1")) is RecordState.REVERSED
    assert target_state(notice("6", reverse_flag="2")) is RecordState.REVERSAL_NOTICE
    assert target_state(replace(FRESH, reverse_flag=None)) is RecordState.AVAILABLE


def test_first_sight_credits_available() -> None:
    world = World()
    decision = world.receive(FRESH)
    assert decision.outcome == "applied"
    assert decision.entry is not None
    assert decision.entry.ref_id == "1234"
    assert len(decision.entry.postings) == 2
    assert decision.position == RecordPosition(
        state=RecordState.AVAILABLE,
        held_available=AMOUNT,
        held_frozen=0,
        deducted_amount=0,
        reversed_amount=0,
        trans_amount=AMOUNT,
        account_id=ACCOUNT,
        currency="CNY",
    )
    assert world.buckets() == (AMOUNT, 0)
    assert world.system(INFLOW) == -AMOUNT


def test_available_then_frozen_then_deducted() -> None:
    world = World()
    world.receive(FRESH)
    frozen = world.receive(HELD)
    assert frozen.outcome == "applied"
    assert frozen.note == "AVAILABLE -> FROZEN"
    assert world.buckets() == (0, AMOUNT)
    assert world.records["1234"].held_frozen == AMOUNT
    assert world.records["1234"].held_available == 0
    deducted = world.receive(DEDUCTED)
    assert deducted.outcome == "applied"
    assert world.buckets() == (0, 0)
    position = world.records["1234"]
    assert position.state is RecordState.DEDUCTED
    assert (position.held_available, position.held_frozen) == (0, 0)
    assert position.deducted_amount == AMOUNT
    assert world.system(CLEARING) == AMOUNT
    assert world.system(INFLOW) == -AMOUNT


def test_available_then_deducted() -> None:
    world = World()
    world.receive(FRESH)
    decision = world.receive(DEDUCTED)
    assert moved(decision) == {
        (ACCOUNT, Bucket.AVAILABLE, -AMOUNT),
        (CLEARING, Bucket.AVAILABLE, AMOUNT),
    }
    assert world.buckets() == (0, 0)
    assert world.records["1234"].deducted_amount == AMOUNT


def test_frozen_before_available() -> None:
    world = World()
    first = world.receive(HELD)
    assert first.entry is not None
    assert len(first.entry.postings) == 4  # credit and freeze in one entry
    assert first.note == "new -> FROZEN"
    assert world.buckets() == (0, AMOUNT)
    late = world.receive(FRESH)
    assert late.outcome == "stale"
    assert late.note == "AVAILABLE arrived, record already FROZEN"
    assert world.buckets() == (0, AMOUNT)


def test_deducted_before_frozen() -> None:
    world = World()
    world.receive(DEDUCTED)
    assert world.records["1234"].state is RecordState.DEDUCTED
    assert world.buckets() == (0, 0)
    assert world.system(CLEARING) == AMOUNT
    assert world.receive(HELD).outcome == "stale"
    assert world.receive(FRESH).outcome == "stale"
    assert world.system(CLEARING) == AMOUNT
    assert len(world.entries) == 1


def test_duplicates_are_stale() -> None:
    world = World()
    world.receive(FRESH)
    duplicate = world.receive(FRESH)
    assert duplicate.outcome == "stale"
    assert duplicate.note == "AVAILABLE arrived, record already AVAILABLE"
    assert world.buckets() == (AMOUNT, 0)


def test_reversal_before_arrival() -> None:
    world = World()
    first = world.receive(REVERSED)
    assert first.outcome == "applied"
    assert world.buckets() == (0, 0)
    position = world.records["1234"]
    assert position.state is RecordState.REVERSED
    assert position.reversed_amount == AMOUNT
    assert world.system(INFLOW) == 0
    for late in (FRESH, HELD, DEDUCTED, REVERSED):
        assert world.receive(late).outcome == "stale"
    assert world.buckets() == (0, 0)
    assert len(world.entries) == 1


def test_reversal_of_a_frozen_credit() -> None:
    world = World()
    world.receive(HELD)
    decision = world.receive(REVERSED)
    assert decision.outcome == "applied"
    assert moved(decision) == {
        (ACCOUNT, Bucket.FROZEN, -AMOUNT),
        (INFLOW, Bucket.AVAILABLE, AMOUNT),
    }
    assert world.buckets() == (0, 0)
    assert world.records["1234"].reversed_amount == AMOUNT


def test_reversal_after_deduction_moves_nothing() -> None:
    world = World()
    world.receive(FRESH)
    world.receive(DEDUCTED)
    decision = world.receive(notice("1", reverse_flag="1"))
    assert decision.outcome == "applied"
    assert decision.entry is None
    assert decision.position is not None
    assert decision.position.state is RecordState.REVERSED
    assert decision.position.reversed_amount == 0
    assert decision.position.deducted_amount == AMOUNT
    assert "shortfall: reversed 0 of 100000" in decision.note
    assert world.buckets() == (0, 0)
    assert world.system(CLEARING) == AMOUNT


def test_zero_amount_records_state_without_postings() -> None:
    world = World()
    first = world.receive(notice("0", amount=0))
    assert first.outcome == "applied"
    assert first.entry is None
    assert first.position is not None
    assert first.position.state is RecordState.AVAILABLE
    second = world.receive(notice("6", amount=0))
    assert second.outcome == "applied"
    assert second.entry is None
    assert world.records["1234"].state is RecordState.FROZEN
    assert world.entries == []


def test_contradicting_amount_is_stale() -> None:
    world = World()
    world.receive(FRESH)
    decision = world.receive(notice("6", amount=AMOUNT + 1))
    assert decision.outcome == "stale"
    assert "contradicts the stored record" in decision.note
    assert "trans_amount 100001 != stored 100000" in decision.note
    assert world.buckets() == (AMOUNT, 0)


def test_contradicting_account_is_stale() -> None:
    world = World()
    world.receive(FRESH)
    other = Balance("acct-other", "CNY", available=AMOUNT)
    decision = decide(world.records["1234"], HELD, other, new_entry_id())
    assert decision.outcome == "stale"
    assert "account acct-other != stored acct-15489516846" in decision.note


def test_first_sight_in_the_wrong_currency_is_an_error() -> None:
    with pytest.raises(ValueError):
        decide(None, FRESH, Balance(ACCOUNT, "USD"), new_entry_id())


def test_reversal_notice_is_recorded_and_posts_nothing() -> None:
    world = World()
    first = world.receive(CORRECTION)
    assert first.outcome == "applied"
    assert first.entry is None
    assert first.position is not None
    assert first.position.state is RecordState.REVERSAL_NOTICE
    assert first.position.trans_amount == AMOUNT
    again = world.receive(CORRECTION)
    assert again.outcome == "stale"
    assert world.receive(FRESH).outcome == "stale"
    assert world.receive(REVERSED).outcome == "stale"
    assert world.buckets() == (0, 0)
    assert world.entries == []


def test_reversal_notice_for_a_credited_record_is_stale() -> None:
    world = World()
    world.receive(FRESH)
    decision = world.receive(CORRECTION)
    assert decision.outcome == "stale"
    assert world.records["1234"].state is RecordState.AVAILABLE
    assert world.buckets() == (AMOUNT, 0)


def test_shortfall_when_the_customer_spent_the_credit() -> None:
    world = World()
    world.receive(FRESH)
    world.balance = replace(world.balance, available=30_000)  # 70_000 paid out meanwhile
    frozen = world.receive(HELD)
    assert "shortfall: froze 30000 of 100000" in frozen.note
    position = world.records["1234"]
    assert (position.held_available, position.held_frozen) == (70_000, 30_000)
    assert world.buckets() == (0, 30_000)

    # Money arrives again; the remainder of this credit is still taken from available.
    world.balance = replace(world.balance, available=50_000)
    deducted = world.receive(DEDUCTED)
    assert deducted.outcome == "applied"
    assert "shortfall: deducted 80000 of 100000" in deducted.note
    assert world.records["1234"].deducted_amount == 80_000
    assert world.buckets() == (0, 0)


def test_shortfall_on_deduction() -> None:
    world = World()
    world.receive(FRESH)
    world.balance = replace(world.balance, available=40_000)
    decision = world.receive(DEDUCTED)
    assert "shortfall: deducted 40000 of 100000" in decision.note
    assert world.records["1234"].deducted_amount == 40_000
    assert world.buckets() == (0, 0)


def test_account_allowed_negative_gives_the_full_amount() -> None:
    world = World(balance=Balance(ACCOUNT, "CNY", allow_negative=True))
    world.receive(FRESH)
    world.balance = replace(world.balance, available=0)
    world.receive(DEDUCTED)
    assert world.records["1234"].deducted_amount == AMOUNT
    assert world.buckets() == (-AMOUNT, 0)


# --- every order of every notice -------------------------------------------------------------

STORIES = [
    ["0"],
    ["6"],
    ["1"],
    ["0", "6"],
    ["0", "1"],
    ["0", "6", "1"],
    ["6", "1"],
    ["0", "R"],
    ["0", "6", "R"],
    ["0", "6", "1", "R"],
    ["0", "1", "R"],
    ["R"],
]


def story_notice(step: str, record_id: str, amount: int, rng: random.Random) -> TransferNotice:
    if step == "R":  # the reversed flag may come with any deduction status
        return notice(rng.choice("016"), reverse_flag="1", amount=amount, record_id=record_id)
    return notice(step, amount=amount, record_id=record_id)


@pytest.mark.parametrize("seed", range(300))
def test_any_order_ends_in_the_furthest_state(seed: int) -> None:
    rng = random.Random(seed)
    starting = rng.choice([0, 0, 12_345])
    world = World(balance=Balance(ACCOUNT, "CNY", available=starting))
    stories: dict[str, tuple[list[str], int]] = {}
    inbox: list[TransferNotice] = []
    for index in range(rng.randint(1, 3)):
        record_id = f"r{index}"
        steps = rng.choice(STORIES)
        amount = rng.choice([0, 1, 100, 99_999, 100_000])
        stories[record_id] = (steps, amount)
        for step in steps:
            for _ in range(rng.randint(1, 3)):  # the bank retries
                inbox.append(story_notice(step, record_id, amount, rng))
    rng.shuffle(inbox)

    for incoming in inbox:
        world.receive(incoming)

    implied_available, implied_frozen = starting, 0
    moved_out = 0
    for record_id, (steps, amount) in stories.items():
        furthest = max(
            (target_state(story_notice(s, record_id, amount, rng)) for s in steps),
            key=RANK.__getitem__,
        )
        position = world.records[record_id]
        assert position.state is furthest
        if furthest is RecordState.AVAILABLE:
            implied_available += amount
            assert position.held_available == amount
        elif furthest is RecordState.FROZEN:
            implied_frozen += amount
            assert position.held_frozen == amount
        else:
            assert position.deducted_amount + position.reversed_amount == amount
            assert (position.held_available, position.held_frozen) == (0, 0)
            moved_out += position.deducted_amount
    assert world.buckets() == (implied_available, implied_frozen)
    assert world.balance.available >= 0
    assert world.balance.frozen >= 0

    # The ledger as a whole balances, and the system accounts mirror the customer's side.
    every_posting = [p for e in world.entries for p in e.postings]
    assert sum(p.amount for p in every_posting) == 0
    customer: defaultdict[Bucket, int] = defaultdict(int)
    for p in every_posting:
        if p.account_id == ACCOUNT:
            customer[p.bucket] += p.amount
    assert customer[Bucket.AVAILABLE] == implied_available - starting
    assert customer[Bucket.FROZEN] == implied_frozen
    assert world.system(CLEARING) == moved_out
    assert world.system(INFLOW) == -(implied_available - starting + implied_frozen + moved_out)
