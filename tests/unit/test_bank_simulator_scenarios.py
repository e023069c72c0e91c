"""Scenario generators: deterministic per seed, with the counts, order and duplicates asked for."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime

import pytest

from fundhub.bank_simulator.notifications import TransferSpec
from fundhub.bank_simulator.scenarios import (
    DemoFeed,
    Phase,
    arrivals,
    bursts,
    demo_accounts,
    duplicated,
    lifecycle,
    plan_transfers,
    reversal,
    shuffled,
)

ACCOUNTS = demo_accounts(4)
AT = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def states(spec: TransferSpec) -> tuple[str, str]:
    return spec.deduct_status, spec.reverse_flag


def test_demo_accounts_are_stable_and_distinct() -> None:
    assert demo_accounts(3) == demo_accounts(3)
    assert len(set(demo_accounts(50))) == 50
    assert demo_accounts(2)[0] == "6222020000000001"


def test_arrivals_are_deterministic_for_a_seed() -> None:
    first = arrivals(random.Random(7), 50, ACCOUNTS, 100, 10_000, at=AT)
    again = arrivals(random.Random(7), 50, ACCOUNTS, 100, 10_000, at=AT)
    other = arrivals(random.Random(8), 50, ACCOUNTS, 100, 10_000, at=AT)

    assert first == again
    assert first != other
    assert len(first) == 50
    assert len({s.record_id for s in first}) == 50
    assert all(100 <= s.trans_amount <= 10_000 for s in first)
    assert {s.in_acct_no for s in first} <= set(ACCOUNTS)
    assert all(states(s) == ("0", "0") and s.trans_time == AT for s in first)


def test_record_prefix_changes_ids_but_not_amounts() -> None:
    a = arrivals(random.Random(1), 5, ACCOUNTS, 1, 9, record_prefix="A")
    b = arrivals(random.Random(1), 5, ACCOUNTS, 1, 9, record_prefix="B")

    assert [s.trans_amount for s in a] == [s.trans_amount for s in b]
    assert a[0].record_id == "A00000001" and b[0].record_id == "B00000001"


@pytest.mark.parametrize(
    ("n", "accounts", "low", "high"),
    [(-1, ACCOUNTS, 1, 2), (1, [], 1, 2), (1, ACCOUNTS, 0, 2), (1, ACCOUNTS, 3, 2)],
)
def test_arrivals_refuse_bad_arguments(n: int, accounts: list[str], low: int, high: int) -> None:
    with pytest.raises(ValueError):
        arrivals(random.Random(0), n, accounts, low, high)


def test_lifecycle_and_reversal() -> None:
    (spec,) = arrivals(random.Random(0), 1, ACCOUNTS, 1, 9)

    assert [states(s) for s in lifecycle(spec)] == [("0", "0"), ("6", "0"), ("1", "0")]
    assert {s.record_id for s in lifecycle(spec)} == {spec.record_id}
    assert states(reversal(spec)) == ("0", "1")
    assert reversal(spec).trans_amount == spec.trans_amount


def test_duplicated_repeats_each_notice() -> None:
    specs = arrivals(random.Random(0), 3, ACCOUNTS, 1, 9)

    assert duplicated(specs, 1) == specs
    assert duplicated(specs, 3) == [s for s in specs for _ in range(3)]
    with pytest.raises(ValueError):
        duplicated(specs, 0)


def test_shuffle_keeps_each_records_own_order() -> None:
    specs = [s for spec in arrivals(random.Random(0), 30, ACCOUNTS, 1, 9) for s in lifecycle(spec)]
    mixed = shuffled(random.Random(3), specs)

    assert mixed != specs
    assert Counter(mixed) == Counter(specs)
    assert mixed == shuffled(random.Random(3), specs)
    for record_id in {s.record_id for s in specs}:
        mine = [s.deduct_status for s in mixed if s.record_id == record_id]
        assert mine == ["0", "6", "1"]


def test_free_shuffle_may_reorder_a_record() -> None:
    specs = [s for spec in arrivals(random.Random(0), 30, ACCOUNTS, 1, 9) for s in lifecycle(spec)]
    mixed = shuffled(random.Random(3), specs, keep_record_order=False)

    assert Counter(mixed) == Counter(specs)
    orders = {
        tuple(s.deduct_status for s in mixed if s.record_id == r)
        for r in {s.record_id for s in specs}
    }
    assert orders != {("0", "6", "1")}


def test_bursts_cover_the_sequence_in_order() -> None:
    specs = arrivals(random.Random(0), 101, ACCOUNTS, 1, 9)
    groups = bursts(random.Random(5), specs, 5, 20)

    assert [s for group in groups for s in group] == specs
    assert all(5 <= len(group) <= 20 for group in groups[:-1])
    assert groups == bursts(random.Random(5), specs, 5, 20)


def test_plan_counts_phases_duplicates_and_reversals() -> None:
    def plan() -> list[Phase]:
        return plan_transfers(
            random.Random(42),
            200,
            ACCOUNTS,
            100,
            50_000,
            duplicates=3,
            lifecycle=True,
            reversal_rate=0.25,
            record_prefix="T",
            at=AT,
        )

    phases = plan()
    by_name = {phase.name: phase.specs for phase in phases}

    assert [phase.name for phase in phases] == ["arrivals", "processing", "deducted", "reversals"]
    arrived = Counter(s.record_id for s in by_name["arrivals"])
    assert len(arrived) == 200 and set(arrived.values()) == {3}
    reversed_ids = {s.record_id for s in by_name["reversals"]}
    deducted_ids = {s.record_id for s in by_name["deducted"]}
    assert 20 < len(reversed_ids) < 80
    assert reversed_ids.isdisjoint(deducted_ids)
    assert reversed_ids | deducted_ids == set(arrived)
    assert {s.record_id for s in by_name["processing"]} == deducted_ids
    assert all(states(s) == ("6", "0") for s in by_name["processing"])
    assert all(states(s) == ("1", "0") for s in by_name["deducted"])
    assert all(states(s) == ("0", "1") for s in by_name["reversals"])
    assert len(by_name["reversals"]) == 3 * len(reversed_ids)

    assert plan() == phases


def test_plain_plan_is_one_phase_of_arrivals() -> None:
    phases = plan_transfers(random.Random(1), 10, ACCOUNTS, 1, 9, shuffle=False)

    assert [p.name for p in phases] == ["arrivals"]
    assert [s.record_id for s in phases[0].specs] == [f"R{n:08d}" for n in range(1, 11)]


def test_demo_feed_sends_follow_ups_after_their_arrival() -> None:
    feed = DemoFeed(random.Random(9), ACCOUNTS, record_prefix="D")
    seen: list[TransferSpec] = []
    for _ in range(200):
        seen.extend(feed.tick(AT))

    arrivals_seen = [s for s in seen if states(s) == ("0", "0")]
    assert len(arrivals_seen) == 200
    assert all(s.trans_amount % 100 == 0 for s in arrivals_seen)
    first_index: dict[str, int] = {}
    for index, spec in enumerate(seen):
        first_index.setdefault(spec.record_id, index)
        assert first_index[spec.record_id] <= index
    for record_id in {s.record_id for s in seen}:
        mine = [states(s) for s in seen if s.record_id == record_id]
        assert mine in (
            [("0", "0")],
            [("0", "0"), ("0", "1")],
            [("0", "0"), ("6", "0")],
            [("0", "0"), ("6", "0"), ("1", "0")],
        )
    assert any(states(s) == ("1", "0") for s in seen)
    assert any(states(s) == ("0", "1") for s in seen)
