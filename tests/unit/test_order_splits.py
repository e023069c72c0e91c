"""The split rule and the refund allocation (orders.splits), with property-style checks."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fundhub.orders.splits import (
    NotAReceiver,
    RefundTooLarge,
    SplitMismatch,
    allocate,
    check_split,
    plan_refund,
)

parts_left = st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=51).filter(
    lambda parts: sum(parts) > 0
)


def test_a_split_that_adds_up_passes_and_one_that_does_not_names_the_difference() -> None:
    check_split(10_000, [6_000, 3_000], 1_000)
    check_split(10_000, [10_000], 0)
    with pytest.raises(SplitMismatch, match=r"= 9999, but amount = 10000"):
        check_split(10_000, [6_000, 3_000], 999)
    with pytest.raises(SplitMismatch, match=r"= 10001"):
        check_split(10_000, [6_000, 3_001], 1_000)


def test_the_first_refund_follows_the_split_and_rounding_goes_to_the_largest_remainder() -> None:
    # 60/30/10 of 100: exact.
    assert allocate(50, [60, 30, 10]) == [30, 15, 5]
    # A third each: 33.33.. each, the one fen left goes to the first (equal remainders).
    assert allocate(100, [300, 300, 300]) == [34, 33, 33]
    # 7 fen over 50/30/20: 3.5 / 2.1 / 1.4 -> floors 3/2/1, the fen to the .5
    assert allocate(7, [50, 30, 20]) == [4, 2, 1]
    # 1 fen over 2 receivers and a fee: the largest part gets it.
    assert allocate(1, [2, 5, 3]) == [0, 1, 0]


def test_a_full_refund_empties_every_part_exactly() -> None:
    assert allocate(997, [331, 333, 333]) == [331, 333, 333]


def test_a_refund_over_what_is_left_is_refused() -> None:
    with pytest.raises(RefundTooLarge, match="more than the 100 left"):
        allocate(101, [60, 30, 10])
    with pytest.raises(ValueError):
        allocate(0, [1])


@settings(max_examples=400, deadline=None)
@given(remaining=parts_left, data=st.data())
def test_allocations_add_up_stay_within_each_part_and_within_a_fen_of_exact(
    remaining: list[int], data: st.DataObject
) -> None:
    refund = data.draw(st.integers(min_value=1, max_value=sum(remaining)), label="refund")
    shares = allocate(refund, remaining)
    assert sum(shares) == refund
    total = sum(remaining)
    for share, left in zip(shares, remaining, strict=True):
        assert 0 <= share <= left
        exact = Fraction(refund * left, total)
        assert abs(share - exact) < 1
    if refund == total:
        assert shares == remaining


@settings(max_examples=200, deadline=None)
@given(
    shares=st.lists(st.integers(min_value=1, max_value=10**7), min_size=1, max_size=50),
    fee=st.integers(min_value=0, max_value=10**6),
    data=st.data(),
)
def test_successive_refunds_never_exceed_any_part_and_end_exactly_at_zero(
    shares: list[int], fee: int, data: st.DataObject
) -> None:
    parts: list[tuple[str | None, int]] = [(f"m{i}", s) for i, s in enumerate(shares)]
    parts.append((None, fee))
    taken = [0] * len(parts)
    left = sum(shares) + fee
    partial = data.draw(st.integers(min_value=0, max_value=5), label="partial refunds")
    for n in range(partial + 1):
        if not left:
            break
        # Some partial refunds, then the rest in full.
        last = n == partial
        refund = left if last else data.draw(st.integers(1, left), label="refund")
        allocation = plan_refund(refund, parts, taken)
        taken = [t + a for t, a in zip(taken, allocation, strict=True)]
        left -= refund
        assert all(t <= amount for t, (_, amount) in zip(taken, parts, strict=True))
    assert taken == [amount for _, amount in parts]
    with pytest.raises(RefundTooLarge):
        plan_refund(1, parts, taken)


def test_named_amounts_must_add_up_fit_each_part_and_name_receivers() -> None:
    parts: list[tuple[str | None, int]] = [("m1", 60), ("m2", 30), (None, 10)]
    assert plan_refund(40, parts, [0, 0, 0], {"m1": 40}) == [40, 0, 0]
    assert plan_refund(15, parts, [0, 0, 0], {"m2": 10}, 5) == [0, 10, 5]
    with pytest.raises(SplitMismatch):
        plan_refund(15, parts, [0, 0, 0], {"m2": 10})
    with pytest.raises(RefundTooLarge) as exceeded:
        plan_refund(35, parts, [0, 0, 0], {"m2": 35})
    assert exceeded.value.part == 1
    with pytest.raises(RefundTooLarge) as fee_exceeded:
        plan_refund(11, parts, [0, 0, 5], {}, 11)
    assert fee_exceeded.value.part == 2  # the platform fee's part has 5 left
    with pytest.raises(NotAReceiver):
        plan_refund(10, parts, [0, 0, 0], {"m9": 10})
    # What earlier refunds took is no longer there.
    with pytest.raises(RefundTooLarge) as taken:
        plan_refund(30, parts, [40, 0, 0], {"m1": 30})
    assert taken.value.part == 0
